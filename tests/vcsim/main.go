// vcsim: govmomi's vCenter simulator (VPX model) on 127.0.0.1 for the tests and the demo.
// It prints KEY=VALUE lines (URL, thumbprints, datastore folders, VM moRefs) that a shell can
// source, and removes everything it created on SIGINT/SIGTERM.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

func thumbprint(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// A fresh RSA-2048 self-signed certificate: govmomi's built-in one is RSA-1024, which OpenSSL 3
// at Debian's default security level refuses.
func generateCert() (tls.Certificate, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vcsim", Organization: []string{"vixfs tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour * 365),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, err
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var nonKey = regexp.MustCompile(`[^A-Za-z0-9_]`)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "vcsim: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	// `vcsim nfc-serve -dir DIR`: the NFC server that -nfc starts (nfc_server.go), the same
	// binary so that a test can start it again after killing it.
	if len(os.Args) > 1 && os.Args[1] == "nfc-serve" {
		nfcServe(os.Args[2:])
		return
	}
	listen := flag.String("l", "127.0.0.1:0", "listen address (host:port); loopback only")
	useTLS := flag.Bool("tls", true, "serve HTTPS")
	builtin := flag.Bool("tls-builtin", false, "with -tls, use govmomi's built-in RSA-1024 certificate")
	certFile := flag.String("tlscert", "", "PEM certificate to serve (with -tlskey)")
	keyFile := flag.String("tlskey", "", "PEM key to serve (with -tlscert)")
	certOut := flag.String("cert-out", "", "where to write the server certificate PEM")
	user := flag.String("user", "", "user:password that Login must match (default: any non-empty pair)")
	envFile := flag.String("env-file", "", "write the KEY=VALUE lines here once ready")
	pidFile := flag.String("pid-file", "", "write the PID here")
	trace := flag.Bool("trace", false, "dump SOAP traffic to stderr")
	autostart := flag.Bool("autostart", true, "power the model VMs on")
	standalone := flag.Int("standalone-host", 1, "standalone hosts")
	clusters := flag.Int("cluster", 1, "clusters")
	clusterHosts := flag.Int("host", 3, "hosts per cluster")
	vms := flag.Int("vm", 2, "VMs per host/cluster")
	dss := flag.Int("ds", 1, "datastores")
	idle := flag.Duration("session-idle", 0, "expire sessions idle this long (0 = never)")
	samples := flag.String("samples", "", "folder of sample VM disks and their plan (samples.go)")
	nfc := flag.Bool("nfc", false, "serve NfcService tickets and run an NFC server (nfc_*.go)")
	hostHTTPSFlag := flag.Bool("host-https", false, "serve the hosts' /folder behind generic service tickets (host_https.go)")
	folderAuth := flag.Bool("folder-auth", false, "with -host-https, the vCenter's /folder wants a live session cookie")
	cbtAll := flag.Bool("cbt", false, "every VM has changeTrackingEnabled from the start, the samples' too (cbt.go)")
	flag.Parse()

	if *folderAuth && !*hostHTTPSFlag {
		die("-folder-auth needs -host-https")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		die("bad -l %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		die("refusing to listen on non-loopback address %q", host)
	}

	simulator.Trace = *trace
	if *idle > 0 {
		simulator.SessionIdleTimeout = *idle
	}
	listenURL := &url.URL{Host: *listen}
	if *user != "" {
		parts := strings.SplitN(*user, ":", 2)
		if len(parts) != 2 {
			die("-user wants user:password")
		}
		listenURL.User = url.UserPassword(parts[0], parts[1])
	}

	var certPEM []byte
	var tlsConfig *tls.Config
	if *useTLS {
		cfg := new(tls.Config)
		switch {
		case *certFile != "" || *keyFile != "":
			cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				die("loading -tlscert/-tlskey: %v", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
			certPEM, _ = os.ReadFile(*certFile)
		case *builtin:
			// empty Certificates: NewServer falls back to govmomi's LocalhostCert
		default:
			cert, pemBytes, err := generateCert()
			if err != nil {
				die("generating certificate: %v", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
			certPEM = pemBytes
		}
		tlsConfig = cfg
	}

	// Created only after every flag was checked: die() exits without removing its folders.
	m := simulator.VPX()
	m.Autostart = *autostart
	m.Host = *standalone
	m.Cluster = *clusters
	m.ClusterHost = *clusterHosts
	m.Machine = *vms
	m.Datastore = *dss
	if err := m.Create(); err != nil {
		die("model: %v", err)
	}
	defer m.Remove()
	installAuthz()
	var nfcSrv *nfcSetup
	defer func() { nfcSrv.stop() }()
	var hostSrv *hostHTTPS
	defer func() { hostSrv.stop() }()
	// Later failures still remove the datastore folders and stop the NFC server (os.Exit skips
	// deferred calls).
	fatal := func(format string, args ...interface{}) {
		nfcSrv.stop()
		hostSrv.stop()
		m.Remove()
		die(format, args...)
	}

	m.Service.Listen = listenURL
	m.Service.TLS = tlsConfig

	s := m.Service.NewServer()
	s.Config.Handler = withLayoutSizes(s.Config.Handler) // layout.go: fresh layoutEx sizes
	defer s.Close()
	// Switches the tests flip while the simulator runs (consolidate.go, quiesce.go).
	control, err := os.MkdirTemp("", "vcsim-control-")
	if err != nil {
		fatal("control folder: %v", err)
	}
	defer os.RemoveAll(control)
	installConsolidation(s, control)
	installQuiesceFault(s, control)
	installCBT(s, control, *cbtAll)

	var lines []string
	add := func(k, v string) { lines = append(lines, k+"="+v) }
	u := *s.URL
	u.User = nil
	add("VCSIM_URL", u.String())
	add("VCSIM_SCHEME", u.Scheme)
	add("VCSIM_HOST", u.Hostname())
	add("VCSIM_PORT", u.Port())
	add("VCSIM_CONTROL", control)

	if *useTLS {
		leaf := s.Server.TLS.Certificates
		var der []byte
		if len(leaf) > 0 {
			der = leaf[0].Certificate[0]
		} else {
			der = s.Certificate().Raw
		}
		s1 := sha1.Sum(der)
		s256 := sha256.Sum256(der)
		add("VCSIM_SHA1", thumbprint(s1[:]))
		add("VCSIM_SHA256", thumbprint(s256[:]))
		if c, err := x509.ParseCertificate(der); err == nil {
			spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			add("VCSIM_PINNEDPUBKEY", "sha256//"+base64.StdEncoding.EncodeToString(spki[:]))
		}
		if certPEM == nil {
			certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		out := *certOut
		if out == "" {
			out = fmt.Sprintf("%s/vcsim-cert-%d.pem", os.TempDir(), os.Getpid())
		}
		if err := writeAtomic(out, certPEM); err != nil {
			fatal("writing %s: %v", out, err)
		}
		defer os.Remove(out)
		add("VCSIM_CERT", out)
	}

	var dsLines []string
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		name := nonKey.ReplaceAllString(ds.Name, "_")
		dir := ds.Info.GetDatastoreInfo().Url
		dsLines = append(dsLines, "VCSIM_DS_"+name+"="+dir, "VCSIM_DSREF_"+name+"="+ds.Self.Value)
	}
	sort.Strings(dsLines)
	lines = append(lines, dsLines...)
	var dcs []string
	for _, e := range simulator.Map.All("Datacenter") {
		dcs = append(dcs, e.(*simulator.Datacenter).Name)
	}
	sort.Strings(dcs)
	add("VCSIM_DC", strings.Join(dcs, ","))
	var vmLines []string
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		vmLines = append(vmLines, "VCSIM_VM_"+nonKey.ReplaceAllString(vm.Name, "_")+"="+vm.Self.Value)
	}
	sort.Strings(vmLines)
	lines = append(lines, vmLines...)
	var hostLines []string
	for _, e := range simulator.Map.All("HostSystem") {
		h := e.(*simulator.HostSystem)
		hostLines = append(hostLines, "VCSIM_HOSTSYSTEM_"+nonKey.ReplaceAllString(h.Name, "_")+"="+h.Self.Value)
	}
	sort.Strings(hostLines)
	lines = append(lines, hostLines...)
	if *samples != "" {
		login := *s.URL
		if login.User == nil {
			login.User = url.UserPassword("sample", "sample")
		}
		if err := setUpSamples(*samples, &login); err != nil {
			fatal("samples: %v", err)
		}
		add("VCSIM_SAMPLES", *samples)
	}
	if err := addRDMs(); err != nil {
		fatal("%v", err)
	}
	if *nfc {
		if nfcSrv, err = startNFC(); err != nil {
			fatal("nfc: %v", err)
		}
		nfcSrv.register()
		lines = append(lines, nfcSrv.env()...)
	}
	if *hostHTTPSFlag {
		// After -nfc: the hosts' sslThumbprint is then this listener's.
		if hostSrv, err = startHostHTTPS(s, *folderAuth); err != nil {
			fatal("host-https: %v", err)
		}
		lines = append(lines, hostSrv.env()...)
	}
	if self, err := os.Executable(); err == nil {
		add("VCSIM_BIN", self)
	}
	add("VCSIM_PID", fmt.Sprint(os.Getpid()))
	add("VCSIM_READY", "1")

	text := strings.Join(lines, "\n") + "\n"
	if *pidFile != "" {
		if err := writeAtomic(*pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid()))); err != nil {
			fatal("writing %s: %v", *pidFile, err)
		}
		defer os.Remove(*pidFile)
	}
	if *envFile != "" {
		if err := writeAtomic(*envFile, []byte(text)); err != nil {
			fatal("writing %s: %v", *envFile, err)
		}
		defer os.Remove(*envFile)
	}
	fmt.Print(text)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
