// layoutEx file sizes and disk capacities as the datastore holds them now. govmomi's simulator
// records a file's size once, when the file first enters a VM's layoutEx (a ReconfigVM_Task, a
// snapshot), and never again, and a disk's capacity only as a ReconfigVM_Task gives it, so a disk
// replaced later (the tests make theirs with qemu-img after the model exists) would be reported
// with a stale size and capacity. Before each SOAP call the size of every layoutEx file is read
// again from its local file (0 when it is gone), and the capacity of every VirtualDisk of the VMs
// and their snapshots from its VMDK (sparse header or descriptor extents; left alone when the file
// is empty or not a VMDK, as the model's placeholders are), as vSphere reports what the datastore
// holds. Extent files a descriptor names and the simulator did not list are added to layoutEx.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net/http"
	"os"
	"path"
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

// descriptorExtents are the file names a text descriptor's extent lines give (nil for a binary
// file: a monolithic sparse disk is its own extent).
func descriptorExtents(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	head := make([]byte, 65536)
	n, _ := f.Read(head)
	head = head[:n]
	if !bytes.HasPrefix(head, []byte("# Disk DescriptorFile")) {
		return nil
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(head))
	for sc.Scan() {
		line := sc.Text()
		w := strings.Fields(line)
		if len(w) < 4 || (w[0] != "RW" && w[0] != "RDONLY" && w[0] != "NOACCESS") {
			continue
		}
		if q := strings.Index(line, "\""); q >= 0 {
			if e := strings.Index(line[q+1:], "\""); e > 0 {
				names = append(names, line[q+1:q+1+e])
			}
		}
	}
	return names
}

// addExtents lists, in each chain link of the disk layouts, the extent files its descriptor names
// that the simulator left out (it knows only "x.vmdk" and "x-flat.vmdk": a twoGbMaxExtentSparse
// disk's -s001.vmdk ... would be missing), as vSphere lists every file of a disk.
func addExtents(vm *simulator.VirtualMachine, folders map[string]string, disks []types.VirtualMachineFileLayoutExDiskLayout) {
	byKey := map[int32]string{}
	byName := map[string]int32{}
	var next int32
	for _, f := range vm.LayoutEx.File {
		byKey[f.Key] = f.Name
		byName[f.Name] = f.Key
		if f.Key >= next {
			next = f.Key + 1
		}
	}
	for d := range disks {
		for u := range disks[d].Chain {
			unit := &disks[d].Chain[u]
			for _, key := range unit.FileKey {
				name := byKey[key]
				var p object.DatastorePath
				if !strings.HasSuffix(name, ".vmdk") || !p.FromString(name) {
					continue
				}
				for _, extent := range descriptorExtents(localFile(folders, name)) {
					full := p.String()[:len(p.String())-len(p.Path)] + path.Join(path.Dir(p.Path), extent)
					k, ok := byName[full]
					if !ok {
						k = next
						next++
						byName[full], byKey[k] = k, full
						vm.LayoutEx.File = append(vm.LayoutEx.File, types.VirtualMachineFileLayoutExFileInfo{
							Key: k, Name: full, Type: string(types.VirtualMachineFileLayoutExFileTypeDiskExtent),
							Accessible: types.NewBool(true),
						})
					}
					listed := false
					for _, have := range unit.FileKey {
						listed = listed || have == k
					}
					if !listed {
						unit.FileKey = append(unit.FileKey, k)
					}
				}
			}
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
			addExtents(vm, folders, vm.LayoutEx.Disk)
			for i := range vm.LayoutEx.Snapshot {
				addExtents(vm, folders, vm.LayoutEx.Snapshot[i].Disk)
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
