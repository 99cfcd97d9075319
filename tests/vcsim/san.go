// -rdm: raw device mapping disks for the san transport's tests.
//
// govmomi 0.24's simulator cannot add an RDM disk through ReconfigVM_Task: it stores the device,
// then updateDiskLayouts asserts every disk backing is VirtualDiskFlatVer2BackingInfo and panics
// (net/http recovers it: the caller's connection is closed with no reply and the task stays
// "running"). So the disks are placed in the model at start, the way a VM with an RDM would be
// reported, without going through the layout code. A VM given an RDM this way must not be
// reconfigured or snapshotted afterwards (the same panic); the flag is off by default.
package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type rdmSpec struct {
	vm, file, lun, device, mode, parent string
	capacity                            int64
}

type rdmList []rdmSpec

func (l *rdmList) String() string { return fmt.Sprintf("%d RDM disks", len(*l)) }

// vm=NAME,file=[ds] dir/x.vmdk,lun=HEX,capacity=BYTES[,device=PATH][,mode=physicalMode|virtualMode]
// [,parent=[ds] dir/base.vmdk]: with parent, file is a delta disk over the mapping (a virtual-mode
// RDM after a snapshot).
func (l *rdmList) Set(v string) error {
	r := rdmSpec{mode: "physicalMode"}
	for _, kv := range strings.Split(v, ",") {
		parts := strings.SplitN(kv, "=", 2)
		if len(parts) != 2 {
			return fmt.Errorf("%q: expected key=value", kv)
		}
		switch parts[0] {
		case "vm":
			r.vm = parts[1]
		case "file":
			r.file = parts[1]
		case "lun":
			r.lun = parts[1]
		case "device":
			r.device = parts[1]
		case "mode":
			r.mode = parts[1]
		case "parent":
			r.parent = parts[1]
		case "capacity":
			n, err := strconv.ParseInt(parts[1], 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("capacity=%q: expected a positive byte count", parts[1])
			}
			r.capacity = n
		default:
			return fmt.Errorf("unknown key %q (vm, file, lun, capacity, device, mode, parent)", parts[0])
		}
	}
	if r.vm == "" || r.file == "" || r.capacity == 0 {
		return fmt.Errorf("vm=, file= and capacity= are required")
	}
	*l = append(*l, r)
	return nil
}

var rdms rdmList

func init() {
	flag.Var(&rdms, "rdm", "add a raw device mapping disk to a VM at start (repeatable): "+
		"vm=NAME,file=[ds] dir/x.vmdk,lun=HEX,capacity=BYTES[,device=PATH][,mode=physicalMode][,parent=FILE]")
}

// addRDMs places the -rdm disks on their VMs' first SCSI controller with a free unit.
func addRDMs() error {
	for _, r := range rdms {
		var vm *simulator.VirtualMachine
		for _, e := range simulator.Map.All("VirtualMachine") {
			if v := e.(*simulator.VirtualMachine); v.Name == r.vm {
				vm = v
			}
		}
		if vm == nil {
			return fmt.Errorf("-rdm: no VM named %q", r.vm)
		}
		var fault error
		simulator.Map.WithLock(vm, func() { fault = addRDM(vm, r) })
		if fault != nil {
			return fmt.Errorf("-rdm on %s: %v", r.vm, fault)
		}
	}
	return nil
}

func addRDM(vm *simulator.VirtualMachine, r rdmSpec) error {
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	ctrl := devices.PickController((*types.VirtualSCSIController)(nil))
	if ctrl == nil {
		return fmt.Errorf("no SCSI controller with a free unit")
	}
	backing := &types.VirtualDiskRawDiskMappingVer1BackingInfo{
		VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: r.file},
		LunUuid:                      r.lun,
		DeviceName:                   r.device,
		CompatibilityMode:            r.mode,
		DiskMode:                     string(types.VirtualDiskModeIndependent_persistent),
	}
	if r.parent != "" {
		backing.Parent = &types.VirtualDiskRawDiskMappingVer1BackingInfo{
			VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: r.parent},
			LunUuid:                      r.lun,
			DeviceName:                   r.device,
			CompatibilityMode:            r.mode,
			DiskMode:                     backing.DiskMode,
		}
		backing.DeltaDiskFormat = "redoLogFormat"
		backing.DiskMode = string(types.VirtualDiskModePersistent)
		backing.Parent.DiskMode = backing.DiskMode
	}
	var path object.DatastorePath
	if path.FromString(r.file) {
		for _, e := range simulator.Map.All("Datastore") {
			if ds := e.(*simulator.Datastore); ds.Name == path.Datastore {
				ref := ds.Self
				backing.Datastore = &ref
			}
		}
	}
	key := int32(2000)
	for devices.FindByKey(key) != nil {
		key++
	}
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key:     key,
			Backing: backing,
			DeviceInfo: &types.Description{
				Label:   fmt.Sprintf("Hard disk %d", len(devices.SelectByType((*types.VirtualDisk)(nil)))+1),
				Summary: fmt.Sprintf("%d KB", r.capacity/1024),
			},
		},
		CapacityInKB:    r.capacity / 1024,
		CapacityInBytes: r.capacity,
	}
	devices.AssignController(disk, ctrl)
	c := ctrl.GetVirtualController()
	c.Device = append(c.Device, key)
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "config.hardware.device", Val: []types.BaseVirtualDevice(append(devices, disk))},
		{Name: "summary.config.numVirtualDisks", Val: vm.Summary.Config.NumVirtualDisks + 1},
	})
	return nil
}
