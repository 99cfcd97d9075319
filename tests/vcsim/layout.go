// layoutEx file sizes and disk capacities as the datastore holds them now. govmomi's simulator
// records a file's size once, when the file first enters a VM's layoutEx (a ReconfigVM_Task, a
// snapshot), and never again, and a disk's capacity only as a ReconfigVM_Task gives it, so a disk
// replaced later (the tests make theirs with qemu-img after the model exists) would be reported
// with a stale size and capacity. Before each SOAP call the size of every layoutEx file is read
// again from its local file (0 when it is gone), and the capacity of every VirtualDisk of the VMs
// and their snapshots from its VMDK (sparse header or descriptor extents; left alone when the file
// is empty or not a VMDK, as the model's placeholders are), as vSphere reports what the datastore
// holds.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// withLayoutSizes wraps the simulator's HTTP handler: SOAP calls (POST) see fresh sizes.
func withLayoutSizes(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			fillLayoutSizes()
		}
		h.ServeHTTP(w, r)
	})
}

// localFile maps "[ds] path" to the datastore's local folder ("" when it cannot).
func localFile(folders map[string]string, name string) string {
	var p object.DatastorePath
	if !p.FromString(name) {
		return ""
	}
	folder, ok := folders[p.Datastore]
	if !ok {
		return ""
	}
	return filepath.Join(folder, p.Path)
}

// vmdkCapacity is the capacity in bytes of the VMDK at path: a KDMV or COWD header's, else the
// sum of a text descriptor's extents; 0 when unknown.
func vmdkCapacity(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	head := make([]byte, 65536)
	n, _ := f.Read(head)
	head = head[:n]
	switch {
	case len(head) >= 20 && string(head[:4]) == "KDMV":
		return int64(binary.LittleEndian.Uint64(head[12:20]) * 512)
	case len(head) >= 16 && string(head[:4]) == "COWD":
		return int64(binary.LittleEndian.Uint32(head[12:16])) * 512
	case !bytes.Contains(head, []byte("# Disk DescriptorFile")):
		return 0
	}
	var sectors int64
	sc := bufio.NewScanner(bytes.NewReader(head))
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) >= 3 && (w[0] == "RW" || w[0] == "RDONLY" || w[0] == "NOACCESS") {
			if v, err := strconv.ParseInt(w[1], 10, 64); err == nil && v > 0 {
				sectors += v
			}
		}
	}
	return sectors * 512
}

// fillCapacities sets each disk's capacity to its VMDK's own.
func fillCapacities(folders map[string]string, devices []types.BaseVirtualDevice) {
	for _, dev := range devices {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			continue
		}
		local := localFile(folders, b.GetVirtualDeviceFileBackingInfo().FileName)
		if local == "" {
			continue
		}
		if c := vmdkCapacity(local); c > 0 {
			disk.CapacityInBytes = c
			disk.CapacityInKB = c / 1024
		}
	}
}

func fillLayoutSizes() {
	folders := map[string]string{} // datastore name -> local folder
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		folders[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}
	var snaps []types.ManagedObjectReference
	var walk func(list []types.VirtualMachineSnapshotTree)
	walk = func(list []types.VirtualMachineSnapshotTree) {
		for _, t := range list {
			snaps = append(snaps, t.Snapshot)
			walk(t.ChildSnapshotList)
		}
	}
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		simulator.Map.WithLock(vm, func() {
			if vm.Config != nil {
				fillCapacities(folders, vm.Config.Hardware.Device)
			}
			if vm.Snapshot != nil {
				walk(vm.Snapshot.RootSnapshotList)
			}
			if vm.LayoutEx == nil {
				return
			}
			for i := range vm.LayoutEx.File {
				f := &vm.LayoutEx.File[i]
				local := localFile(folders, f.Name)
				if local == "" {
					continue
				}
				var size int64
				if st, err := os.Stat(local); err == nil {
					size = st.Size()
				}
				f.Size = size
				f.UniqueSize = size
			}
		})
	}
	for _, ref := range snaps {
		snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
		if !ok {
			continue
		}
		simulator.Map.WithLock(snap, func() {
			fillCapacities(folders, snap.Config.Hardware.Device)
		})
	}
}
