// Changed block tracking (docs: the project's vsphere-backup reference, §2 and §5), which govmomi
// 0.24.2 lacks: it stores config.changeTrackingEnabled and nothing more, and answers
// QueryChangedDiskAreas with MethodNotFound.
//
// changeIds (this file). While a VM's changeTrackingEnabled is true, each of its disks has a
// state: a per-disk UUID in VMware's spacing ("52 90 37 .. 6b-b3 12 .. d4") and a sequence
// number; the live disk's backing.changeId is "<UUID>/<sequence>". A snapshot taken then records,
// in its own copy of the device list, the changeId of that moment together with the disk's chain
// of files, and the live disk moves on to the next sequence number. Switching CBT off drops the
// states (the live disks lose their changeId); switching it on again starts from a new UUID, so
// every older changeId is refused (a reset); so does a snapshot revert. The states are brought up
// to date before every SOAP call and when a snapshot is put into the registry (Map.AddHandler:
// under the VM's lock).
//
// QueryChangedDiskAreas(snapshot?, deviceKey, startOffset, changeId) is answered before govmomi's
// handler (cbt_query.go), from the delta files: the areas changed since the point a changeId
// names are those allocated in the links of the queried state's chain that the point's chain does
// not have (the simulator never deletes delta files), plus, for the VM's current state, its top
// link (it is still written to); changeId "*" gives every allocated area of the whole chain.
// Allocation (cbt_alloc.go) is qemu-img's: `qemu-img map` of each link opened alone ("backing":
// null), where "present" means allocated in that file (zero grains included; a flat extent's host
// holes excluded), except for hosted sparse (KDMV) links, whose grain tables are read directly
// (qemu-img map takes minutes on a multi-terabyte one). Areas are rounded out to 64 KiB
// (vSphere's false positives).
//
// Replies cover a window of the disk. The switches for tests, files in CONTROL (VCSIM_CONTROL)
// read at each call: cbt-max-areas (areas per reply: the window ends where its last area ends)
// and cbt-window (bytes per reply window); absent, a reply covers the rest of the disk.
//
// Faults, as vSphere gives them: FileFault when CBT is off, when the disk state has no changeId
// (snapshot taken with CBT off), when the changeId's UUID is not the disk's current one (reset)
// and when its sequence number is newer than the queried state's; NotFound for a deviceKey that
// is no disk; InvalidArgument for a startOffset outside the disk or a malformed changeId.
package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// cbtDisk is the tracking state of one disk of one VM.
type cbtDisk struct {
	uuid   string
	seq    int64
	points map[int64][]string // sequence -> local chain files (head first) at its moment
}

type cbtVM struct {
	disks map[int32]*cbtDisk // device key -> state
}

type cbtTracker struct {
	controlDir string
	allOn      bool // -cbt: every VM starts with changeTrackingEnabled

	mu   sync.Mutex // guards vms and maps; taken inside a VM's lock, never around one
	vms  map[string]*cbtVM
	seen map[string]bool // VMs -cbt has turned tracking on for (once: a test may turn it off)

	mapMu    sync.Mutex
	mapCache map[string][]cbtArea // "path size mtime" -> allocated areas of that file alone
}

func (c *cbtTracker) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VcsimChangeTracking", Value: "cbt"}
}
func (c *cbtTracker) UpdateObject(mo.Reference, []types.PropertyChange) {}
func (c *cbtTracker) RemoveObject(types.ManagedObjectReference)         {}

// installCBT wraps the server's handler; call it before the server is used. With allOn (-cbt),
// every VM of the model and every VM created later has change tracking on from the start.
func installCBT(s *simulator.Server, controlDir string, allOn bool) {
	c := &cbtTracker{controlDir: controlDir, allOn: allOn, vms: map[string]*cbtVM{},
		seen: map[string]bool{}, mapCache: map[string][]cbtArea{}}
	simulator.Map.AddHandler(c)
	wrapSOAP(s, func(next http.Handler, w http.ResponseWriter, r *http.Request, body []byte) {
		c.stampAll()
		if bytes.Contains(body, []byte("<QueryChangedDiskAreas")) {
			c.query(w, r, body)
			return
		}
		next.ServeHTTP(w, r)
		if bytes.Contains(body, []byte("<RevertToSnapshot_Task")) ||
			bytes.Contains(body, []byte("<RevertToCurrentSnapshot_Task")) {
			c.resetAfterRevert(body)
		}
	})
}

// resetAfterRevert: a revert invalidates every changeId of the VM's disks, as vSphere's does
// (govmomi's revert task has run by now: its tasks are synchronous).
func (c *cbtTracker) resetAfterRevert(body []byte) {
	m := thisRef.FindSubmatch(body) // consolidate.go
	if m == nil {
		return
	}
	var vm *simulator.VirtualMachine
	switch o := simulator.Map.Get(types.ManagedObjectReference{Type: "VirtualMachine", Value: string(m[1])}).(type) {
	case *simulator.VirtualMachine:
		vm = o
	default:
		snap, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: string(m[1])}).(*simulator.VirtualMachineSnapshot)
		if !ok {
			return
		}
		if vm, ok = simulator.Map.Get(snap.Vm).(*simulator.VirtualMachine); !ok {
			return
		}
	}
	folders := dsFolders()
	simulator.Map.WithLock(vm, func() {
		c.mu.Lock()
		delete(c.vms, vm.Self.Value)
		c.mu.Unlock()
		c.stamp(vm, folders)
	})
}

func newDiskUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[0] = 0x52
	parts := make([]string, 16)
	for i, v := range b {
		parts[i] = fmt.Sprintf("%02x", v)
	}
	return strings.Join(parts[:8], " ") + "-" + strings.Join(parts[8:], " ")
}

func cbtOn(vm *simulator.VirtualMachine) bool {
	return vm.Config != nil && vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
}

func dsFolders() map[string]string {
	folders := map[string]string{}
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		folders[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}
	return folders
}

// localChain is the local files of a disk backing's chain, head first (backingChain:
// nfc_service.go).
func localChain(folders map[string]string, b types.BaseVirtualDeviceBackingInfo) []string {
	var out []string
	for _, name := range backingChain(b) {
		if local := localFile(folders, name); local != "" {
			out = append(out, local)
		}
	}
	return out
}

// changeIDOf is a backing's changeId ("" when the type has none).
func changeIDOf(b types.BaseVirtualDeviceBackingInfo) string {
	switch v := b.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		return v.ChangeId
	case *types.VirtualDiskSparseVer2BackingInfo:
		return v.ChangeId
	case *types.VirtualDiskSeSparseBackingInfo:
		return v.ChangeId
	case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
		return v.ChangeId
	}
	return ""
}

// withChangeID is a copy of the backing's head with its changeId set (backings may be shared
// between device lists: never change one in place).
func withChangeID(b types.BaseVirtualDeviceBackingInfo, id string) types.BaseVirtualDeviceBackingInfo {
	switch v := b.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		cp := *v
		cp.ChangeId = id
		return &cp
	case *types.VirtualDiskSparseVer2BackingInfo:
		cp := *v
		cp.ChangeId = id
		return &cp
	case *types.VirtualDiskSeSparseBackingInfo:
		cp := *v
		cp.ChangeId = id
		return &cp
	case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
		cp := *v
		cp.ChangeId = id
		return &cp
	}
	return b
}

// stamp brings the VM's tracking states and its live disks' changeIds up to date. The caller
// holds the VM's lock.
func (c *cbtTracker) stamp(vm *simulator.VirtualMachine, folders map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if vm.Config == nil {
		return
	}
	// A VM is put into the registry before its config exists: -cbt turns tracking on the
	// first time the VM is seen with one.
	if c.allOn && !c.seen[vm.Self.Value] {
		c.seen[vm.Self.Value] = true
		vm.Config.ChangeTrackingEnabled = types.NewBool(true)
	}
	if !cbtOn(vm) {
		if _, ok := c.vms[vm.Self.Value]; ok {
			delete(c.vms, vm.Self.Value)
		}
		for _, dev := range vm.Config.Hardware.Device {
			if disk, ok := dev.(*types.VirtualDisk); ok && changeIDOf(disk.Backing) != "" {
				disk.Backing = withChangeID(disk.Backing, "")
			}
		}
		return
	}
	state := c.vms[vm.Self.Value]
	if state == nil {
		state = &cbtVM{disks: map[int32]*cbtDisk{}}
		c.vms[vm.Self.Value] = state
	}
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		d := state.disks[disk.Key]
		if d == nil {
			d = &cbtDisk{uuid: newDiskUUID(), seq: 1, points: map[int64][]string{}}
			d.points[1] = localChain(folders, disk.Backing)
			state.disks[disk.Key] = d
		}
		if id := fmt.Sprintf("%s/%d", d.uuid, d.seq); changeIDOf(disk.Backing) != id {
			disk.Backing = withChangeID(disk.Backing, id)
		}
	}
}

func (c *cbtTracker) stampAll() {
	folders := dsFolders()
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		simulator.Map.WithLock(vm, func() { c.stamp(vm, folders) })
	}
}

// PutObject sees new snapshots (under the VM's lock): the
// snapshot gets its own copies of the disks, which keep the changeId of this moment, and the
// VM's live disks move on to the next sequence number.
func (c *cbtTracker) PutObject(obj mo.Reference) {
	switch o := obj.(type) {
	case *simulator.VirtualMachineSnapshot:
		vm, ok := simulator.Map.Get(o.Vm).(*simulator.VirtualMachine)
		if !ok {
			return
		}
		folders := dsFolders()
		c.stamp(vm, folders)
		// govmomi copies the config shallowly: the snapshot and the VM share device objects.
		devices := make([]types.BaseVirtualDevice, len(o.Config.Hardware.Device))
		for i, dev := range o.Config.Hardware.Device {
			if disk, ok := dev.(*types.VirtualDisk); ok {
				cp := *disk
				cp.Backing = withChangeID(disk.Backing, changeIDOf(disk.Backing))
				dev = &cp
			}
			devices[i] = dev
		}
		o.Config.Hardware.Device = devices
		if !cbtOn(vm) {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		state := c.vms[vm.Self.Value]
		if state == nil {
			return
		}
		for _, dev := range devices {
			disk, ok := dev.(*types.VirtualDisk)
			if !ok {
				continue
			}
			d := state.disks[disk.Key]
			if d == nil {
				continue
			}
			// The snapshot keeps <uuid>/<seq> (stamped above); its chain is that point's.
			d.points[d.seq] = localChain(folders, disk.Backing)
			d.seq++
			d.points[d.seq] = d.points[d.seq-1]
		}
		for _, dev := range vm.Config.Hardware.Device {
			if disk, ok := dev.(*types.VirtualDisk); ok {
				if d := state.disks[disk.Key]; d != nil {
					disk.Backing = withChangeID(disk.Backing, fmt.Sprintf("%s/%d", d.uuid, d.seq))
				}
			}
		}
	}
}
