// -nfc: the NfcService managed object (moRef "nfcService") that hands out NFC tickets, as
// vCenter's does. It is absent from the public WSDL and from govmomi, so its request and response
// types are defined here and registered with types.Add; the simulator then decodes the calls
// (namespace urn:vim25) and finds the methods on NfcService by reflection.
//
// The NFC server is another process (nfc_server.go), so a ticket reaches it as a file:
// DIR/tickets/<sessionId>.json naming every file the ticket allows, datastore path -> local path.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type NfcGetVmFiles struct {
	This types.ManagedObjectReference `xml:"_this"`
	Vm   types.ManagedObjectReference `xml:"vm"`
}

// NfcRandomAccessOpenReadonly and NfcRandomAccessOpenDisk take the same arguments.
type NfcRandomAccessOpenReadonly struct {
	This          types.ManagedObjectReference  `xml:"_this"`
	Vm            types.ManagedObjectReference  `xml:"vm"`
	DiskDeviceKey int32                         `xml:"diskDeviceKey"`
	HostForAccess *types.ManagedObjectReference `xml:"hostForAccess,omitempty"`
}

type NfcRandomAccessOpenDisk NfcRandomAccessOpenReadonly

type NfcGetServerNfcLibVersion struct {
	This          types.ManagedObjectReference  `xml:"_this"`
	HostForAccess *types.ManagedObjectReference `xml:"hostForAccess,omitempty"`
}

// The simulator names the response element after the Go type of the body's Res.
type NfcGetVmFilesResponse struct {
	Returnval types.HostServiceTicket `xml:"returnval"`
}
type NfcRandomAccessOpenReadonlyResponse NfcGetVmFilesResponse
type NfcRandomAccessOpenDiskResponse NfcGetVmFilesResponse
type NfcGetServerNfcLibVersionResponse struct {
	Returnval int32 `xml:"returnval"`
}

// Bodies: the simulator encodes Res (a pointer to a named type) and checks Fault().
type nfcFaultBody struct{ Fault_ *soap.Fault }
type nfcGetVmFilesBody struct {
	nfcFaultBody
	Res *NfcGetVmFilesResponse
}
type nfcOpenReadonlyBody struct {
	nfcFaultBody
	Res *NfcRandomAccessOpenReadonlyResponse
}
type nfcOpenDiskBody struct {
	nfcFaultBody
	Res *NfcRandomAccessOpenDiskResponse
}
type nfcLibVersionBody struct {
	nfcFaultBody
	Res *NfcGetServerNfcLibVersionResponse
}

func (b *nfcFaultBody) Fault() *soap.Fault { return b.Fault_ }

func init() {
	for _, v := range []interface{}{NfcGetVmFiles{}, NfcRandomAccessOpenReadonly{}, NfcRandomAccessOpenDisk{},
		NfcGetServerNfcLibVersion{}, NfcGetVmFilesResponse{}, NfcRandomAccessOpenReadonlyResponse{},
		NfcRandomAccessOpenDiskResponse{}, NfcGetServerNfcLibVersionResponse{}} {
		t := reflect.TypeOf(v)
		types.Add(t.Name(), t)
	}
}

type NfcService struct {
	Self types.ManagedObjectReference
	nfc  *nfcSetup
}

func (s *NfcService) Reference() types.ManagedObjectReference { return s.Self }

func faultBody(msg string, f types.BaseMethodFault) soap.HasFault {
	return &nfcFaultBody{Fault_: simulator.Fault(msg, f)}
}

func (s *NfcService) NfcGetVmFiles(req *NfcGetVmFiles) soap.HasFault {
	t, fault := s.issue(req.Vm, nil, nil, false)
	if fault != nil {
		return fault
	}
	return &nfcGetVmFilesBody{Res: &NfcGetVmFilesResponse{Returnval: *t}}
}

func (s *NfcService) NfcRandomAccessOpenReadonly(req *NfcRandomAccessOpenReadonly) soap.HasFault {
	t, fault := s.issue(req.Vm, &req.DiskDeviceKey, req.HostForAccess, false)
	if fault != nil {
		return fault
	}
	return &nfcOpenReadonlyBody{Res: &NfcRandomAccessOpenReadonlyResponse{Returnval: *t}}
}

func (s *NfcService) NfcRandomAccessOpenDisk(req *NfcRandomAccessOpenDisk) soap.HasFault {
	t, fault := s.issue(req.Vm, &req.DiskDeviceKey, req.HostForAccess, true)
	if fault != nil {
		return fault
	}
	return &nfcOpenDiskBody{Res: &NfcRandomAccessOpenDiskResponse{Returnval: *t}}
}

func (s *NfcService) NfcGetServerNfcLibVersion(req *NfcGetServerNfcLibVersion) soap.HasFault {
	if f := checkHost(req.HostForAccess); f != nil {
		return f
	}
	return &nfcLibVersionBody{Res: &NfcGetServerNfcLibVersionResponse{Returnval: 11}}
}

func checkHost(ref *types.ManagedObjectReference) soap.HasFault {
	if ref == nil || ref.Type != "HostSystem" {
		return faultBody("hostForAccess must be a HostSystem", &types.InvalidArgument{InvalidProperty: "hostForAccess"})
	}
	if simulator.Map.Get(*ref) == nil {
		return faultBody(fmt.Sprintf("managed object not found: %s", ref), &types.ManagedObjectNotFound{Obj: *ref})
	}
	return nil
}

// diskConfig: one set of devices, the VM's now or a snapshot's.
func vmDeviceSets(vm *simulator.VirtualMachine) [][]types.BaseVirtualDevice {
	var sets [][]types.BaseVirtualDevice
	simulator.Map.WithLock(vm, func() {
		sets = append(sets, append([]types.BaseVirtualDevice(nil), vm.Config.Hardware.Device...))
		var walk func([]types.VirtualMachineSnapshotTree)
		walk = func(trees []types.VirtualMachineSnapshotTree) {
			for _, t := range trees {
				if snap, ok := simulator.Map.Get(t.Snapshot).(*simulator.VirtualMachineSnapshot); ok {
					sets = append(sets, append([]types.BaseVirtualDevice(nil), snap.Config.Hardware.Device...))
				}
				walk(t.ChildSnapshotList)
			}
		}
		if vm.Snapshot != nil {
			walk(vm.Snapshot.RootSnapshotList)
		}
	})
	return sets
}

// backingChain: the file names of a disk backing and its parents (every backing type that has a
// Parent field, found by reflection).
func backingChain(b types.BaseVirtualDeviceBackingInfo) []string {
	var names []string
	for depth := 0; b != nil && depth < 256; depth++ {
		fb, ok := b.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			break
		}
		names = append(names, fb.GetVirtualDeviceFileBackingInfo().FileName)
		v := reflect.ValueOf(b)
		if v.Kind() != reflect.Ptr || v.IsNil() {
			break
		}
		p := v.Elem().FieldByName("Parent")
		if !p.IsValid() || p.Kind() != reflect.Ptr || p.IsNil() {
			break
		}
		b, _ = p.Interface().(types.BaseVirtualDeviceBackingInfo)
	}
	return names
}

var dsPathRE = regexp.MustCompile(`^\[([^\]]+)\]\s*(.*)$`)

func datastoreFolder(name string) string {
	for _, e := range simulator.Map.All("Datastore") {
		if ds := e.(*simulator.Datastore); ds.Name == name {
			return ds.Info.GetDatastoreInfo().Url
		}
	}
	return ""
}

var extentLine = regexp.MustCompile(`^(RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]+)"`)

// addDiskFiles puts a disk file and what qemu needs beside it (the extents its descriptor names,
// and files named like extents of it: -flat, -sNNN, -fNNN, -delta...) into files.
func addDiskFiles(files map[string]string, dsPath string) {
	m := dsPathRE.FindStringSubmatch(dsPath)
	if m == nil {
		return
	}
	root := datastoreFolder(m[1])
	if root == "" {
		return
	}
	rel := strings.TrimLeft(m[2], "/")
	local := filepath.Join(root, filepath.FromSlash(rel))
	files[dsPath] = local
	relDir, base := filepath.Dir(rel), filepath.Base(rel)
	sibling := func(name string) {
		p := name
		if relDir != "." {
			p = relDir + "/" + name
		}
		files[fmt.Sprintf("[%s] %s", m[1], p)] = filepath.Join(filepath.Dir(local), name)
	}
	if data, err := os.ReadFile(local); err == nil && len(data) < 1<<20 && strings.Contains(string(data), "createType") {
		for _, line := range strings.Split(string(data), "\n") {
			if e := extentLine.FindStringSubmatch(strings.TrimSpace(line)); e != nil && !strings.Contains(e[2], "/") {
				sibling(e[2])
			}
		}
	}
	stem := regexp.QuoteMeta(strings.TrimSuffix(base, ".vmdk"))
	like := regexp.MustCompile(`^` + stem + `-(flat|delta|sesparse|rdm|rdmp|ctk|[sf]\d{3})\.vmdk$`)
	if entries, err := os.ReadDir(filepath.Dir(local)); err == nil {
		for _, e := range entries {
			if like.MatchString(e.Name()) {
				sibling(e.Name())
			}
		}
	}
}

func newSessionID() string {
	b := make([]byte, 26)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *NfcService) issue(vmRef types.ManagedObjectReference, diskKey *int32, host *types.ManagedObjectReference,
	write bool) (*types.HostServiceTicket, soap.HasFault) {
	vm, ok := simulator.Map.Get(vmRef).(*simulator.VirtualMachine)
	if !ok {
		return nil, faultBody(fmt.Sprintf("managed object not found: %s", vmRef), &types.ManagedObjectNotFound{Obj: vmRef})
	}
	if diskKey != nil {
		if f := checkHost(host); f != nil {
			return nil, f
		}
	}
	files := map[string]string{}
	found := false
	for _, devices := range vmDeviceSets(vm) {
		for _, d := range devices {
			disk, ok := d.(*types.VirtualDisk)
			if !ok || (diskKey != nil && disk.Key != *diskKey) {
				continue
			}
			found = true
			for _, name := range backingChain(disk.Backing) {
				addDiskFiles(files, name)
			}
		}
	}
	if diskKey != nil && !found {
		return nil, faultBody(fmt.Sprintf("%s has no disk with key %d", vmRef.Value, *diskKey),
			&types.InvalidArgument{InvalidProperty: "diskDeviceKey"})
	}
	id := newSessionID()
	ticket := nfcTicket{VM: vmRef.Value, DiskKey: diskKey, Write: write, Files: files}
	data, _ := json.MarshalIndent(ticket, "", "  ")
	if err := writeAtomic(filepath.Join(s.nfc.dir, "tickets", id+".json"), data); err != nil {
		return nil, faultBody(err.Error(), &types.SystemError{Reason: err.Error()})
	}
	return &types.HostServiceTicket{
		Host:           "127.0.0.1",
		Port:           int32(s.nfc.port),
		SslThumbprint:  s.nfc.sha1,
		Service:        "vpxa-nfc",
		ServiceVersion: "1.1",
		SessionId:      id,
	}, nil
}
