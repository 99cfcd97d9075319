// -nfc in the simulator: a folder DIR for the NFC server (certificate, port, tickets), the
// server started as `<this binary> nfc-serve -dir DIR`, the NfcService object, and at exit the
// server stopped (whatever pid DIR/pid names: a test may have restarted it) and DIR removed.
package main

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type nfcSetup struct {
	dir           string
	port          int
	sha1, sha256  string
	certPath, bin string
	firstPid      int
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startNFC() (*nfcSetup, error) {
	n := new(nfcSetup)
	var err error
	if n.bin, err = os.Executable(); err != nil {
		return nil, err
	}
	if n.dir, err = os.MkdirTemp("", "vcsim-nfc-"); err != nil {
		return nil, err
	}
	fail := func(err error) (*nfcSetup, error) {
		n.stop()
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(n.dir, "tickets"), 0o700); err != nil {
		return fail(err)
	}
	cert, certPEM, err := generateCert()
	if err != nil {
		return fail(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(cert.PrivateKey.(*rsa.PrivateKey))})
	s1, s256 := sha1.Sum(cert.Certificate[0]), sha256.Sum256(cert.Certificate[0])
	n.sha1, n.sha256 = thumbprint(s1[:]), thumbprint(s256[:])
	n.certPath = filepath.Join(n.dir, "cert.pem")
	if n.port, err = freeLoopbackPort(); err != nil {
		return fail(err)
	}
	// The server watches DIR/owner: it exits when this process is gone, even when it was
	// restarted by a test and so is no child of ours.
	for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM,
		"port": []byte(fmt.Sprintf("%d\n", n.port)), "owner": []byte(fmt.Sprintf("%d\n", os.Getpid()))} {
		if err := writeAtomic(filepath.Join(n.dir, name), data); err != nil {
			return fail(err)
		}
	}
	out, err := os.Create(filepath.Join(n.dir, "nfc-serve.out"))
	if err != nil {
		return fail(err)
	}
	defer out.Close()
	cmd := exec.Command(n.bin, "nfc-serve", "-dir", n.dir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	n.firstPid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(15 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(n.dir, "ready")); err == nil {
			break
		}
		select {
		case err := <-exited:
			text, _ := os.ReadFile(filepath.Join(n.dir, "nfc-serve.out"))
			return fail(fmt.Errorf("nfc-serve exited (%v): %s", err, strings.TrimSpace(string(text))))
		case <-deadline:
			return fail(fmt.Errorf("nfc-serve not ready after 15 s"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return n, nil
}

// register puts NfcService into the model and the NFC certificate's thumbprint on every host.
func (n *nfcSetup) register() {
	simulator.Map.Put(&NfcService{Self: types.ManagedObjectReference{Type: "NfcService", Value: "nfcService"}, nfc: n})
	for _, e := range simulator.Map.All("HostSystem") {
		h := e.(*simulator.HostSystem)
		simulator.Map.WithLock(h, func() { h.Summary.Config.SslThumbprint = n.sha1 })
	}
}

func (n *nfcSetup) env() []string {
	return []string{
		"VCSIM_NFC_DIR=" + n.dir,
		"VCSIM_NFC_PORT=" + strconv.Itoa(n.port),
		"VCSIM_NFC_PID=" + strconv.Itoa(n.firstPid),
		"VCSIM_NFC_SHA1=" + n.sha1,
		"VCSIM_NFC_SHA256=" + n.sha256,
		"VCSIM_NFC_CERT=" + n.certPath,
	}
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// stop: SIGTERM (the server then kills its qemu-nbd children), SIGKILL after 3 s, then DIR goes.
func (n *nfcSetup) stop() {
	if n == nil || n.dir == "" {
		return
	}
	pids := []int{n.firstPid}
	if b, err := os.ReadFile(filepath.Join(n.dir, "pid")); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p != n.firstPid {
			pids = append(pids, p)
		}
	}
	for _, p := range pids {
		if alive(p) {
			syscall.Kill(p, syscall.SIGTERM)
		}
	}
	for _, p := range pids {
		for i := 0; i < 300 && alive(p); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(p) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	os.RemoveAll(n.dir)
	n.dir = ""
}
