// Changed block tracking (docs: the project's vsphere-backup reference, §2 and §5), which govmomi
// 0.24.2 lacks: it stores config.changeTrackingEnabled and nothing more, and answers
// QueryChangedDiskAreas with MethodNotFound.
//
// changeIds. While a VM's changeTrackingEnabled is true, each of its disks has a state: a
// per-disk UUID in VMware's spacing ("52 90 37 .. 6b-b3 12 .. d4") and a sequence number; the live
// disk's backing.changeId is "<UUID>/<sequence>". A snapshot taken then records, in its own copy
// of the device list, the changeId of that moment together with the disk's chain of files, and
// the live disk moves on to the next sequence number. Switching CBT off drops the states (the
// live disks lose their changeId); switching it on again starts from a new UUID, so every older
// changeId is refused (a reset); so does a snapshot revert. The states are brought up to date before every SOAP call and
// when a snapshot is put into the registry (Map.AddHandler: under the VM's lock).
//
// QueryChangedDiskAreas(snapshot?, deviceKey, startOffset, changeId) is answered here, before
// govmomi's handler, from the delta files: the areas changed since the point a changeId names are
// those allocated in the links of the queried state's chain that the point's chain does not have
// (the simulator never deletes delta files), plus, for the VM's current state, its top link (it
// is still written to); changeId "*" gives every allocated area of the whole chain. Allocation
// is qemu-img's: `qemu-img map` of each link opened alone ("backing": null), where "present"
// means allocated in that file (zero grains included; a flat extent's host holes excluded), except
// for hosted sparse (KDMV) links, whose grain tables are read here (qemu-img map takes minutes on a
// multi-terabyte one). Areas are rounded out to 64 KiB (vSphere's false positives).
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
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const cbtGrain = 64 << 10

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

type cbtArea struct{ start, end int64 }

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
	next := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/sdk") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
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

// --- QueryChangedDiskAreas ---

type qcdaRequest struct {
	This        string  `xml:"_this"`
	Snapshot    *string `xml:"snapshot"`
	DeviceKey   string  `xml:"deviceKey"`
	StartOffset string  `xml:"startOffset"`
	ChangeID    *string `xml:"changeId"`
}

func decodeQCDA(body []byte) (*qcdaRequest, error) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "QueryChangedDiskAreas" {
			var req qcdaRequest
			if err := dec.DecodeElement(&req, &se); err != nil {
				return nil, err
			}
			return &req, nil
		}
	}
}

func xmlText(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// cbtFault answers a fault of the call; FileFault carries the disk's file as vSphere's does.
func cbtFault(w http.ResponseWriter, fault, file, text string) {
	detail := ""
	if file != "" {
		detail = "<file>" + xmlText(file) + "</file>"
	}
	soapReply(w, http.StatusInternalServerError, fmt.Sprintf(
		`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring><detail><%sFault xmlns="urn:vim25" xsi:type="%s">%s</%sFault></detail></soapenv:Fault>`,
		xmlText(text), fault, fault, detail, fault))
}

func (c *cbtTracker) controlInt(name string) int64 {
	data, err := os.ReadFile(filepath.Join(c.controlDir, name))
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// queried is what the call asks about, read under the locks.
type queried struct {
	file     string   // datastore path of the disk's head
	chain    []string // local files, head first
	capacity int64
	changeID string // the queried state's changeId ("" with CBT off then)
	live     bool   // the VM's current state (no snapshot)
	state    *cbtDisk
	uuid     string
	points   map[int64][]string
}

func (c *cbtTracker) query(w http.ResponseWriter, r *http.Request, body []byte) {
	if _, err := r.Cookie("vmware_soap_session"); err != nil {
		soapFault(w, "NotAuthenticated", "The session is not authenticated.")
		return
	}
	req, err := decodeQCDA(body)
	if err != nil {
		soapFault(w, "InvalidRequest", "QueryChangedDiskAreas: "+err.Error())
		return
	}
	key, err := strconv.ParseInt(strings.TrimSpace(req.DeviceKey), 10, 32)
	if err != nil {
		soapFault(w, "InvalidArgument", "A specified parameter was not correct: deviceKey")
		return
	}
	start, err := strconv.ParseInt(strings.TrimSpace(req.StartOffset), 10, 64)
	if err != nil || start < 0 {
		soapFault(w, "InvalidArgument", "A specified parameter was not correct: startOffset")
		return
	}
	if req.ChangeID == nil {
		soapFault(w, "InvalidArgument", "A specified parameter was not correct: changeId")
		return
	}
	vmRef := types.ManagedObjectReference{Type: "VirtualMachine", Value: strings.TrimSpace(req.This)}
	vm, ok := simulator.Map.Get(vmRef).(*simulator.VirtualMachine)
	if !ok {
		soapFault(w, "ManagedObjectNotFound", "The object '"+vmRef.String()+"' has already been deleted or has not been completely created")
		return
	}
	folders := dsFolders()
	var q queried
	var on bool
	var devices []types.BaseVirtualDevice
	simulator.Map.WithLock(vm, func() {
		on = cbtOn(vm)
		if vm.Config != nil {
			devices = vm.Config.Hardware.Device
		}
		c.mu.Lock()
		if st := c.vms[vm.Self.Value]; st != nil {
			if d := st.disks[int32(key)]; d != nil {
				q.state = d
				q.uuid = d.uuid
				q.points = map[int64][]string{}
				for k, v := range d.points {
					q.points[k] = v
				}
			}
		}
		c.mu.Unlock()
	})
	q.live = req.Snapshot == nil || strings.TrimSpace(*req.Snapshot) == ""
	if !q.live {
		ref := types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: strings.TrimSpace(*req.Snapshot)}
		snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
		if !ok || snap.Vm != vm.Self {
			soapFault(w, "ManagedObjectNotFound", "The object '"+ref.String()+"' has already been deleted or has not been completely created")
			return
		}
		simulator.Map.WithLock(snap, func() { devices = append([]types.BaseVirtualDevice(nil), snap.Config.Hardware.Device...) })
	}
	var disk *types.VirtualDisk
	simulator.Map.WithLock(vm, func() {
		for _, dev := range devices {
			if d, ok := dev.(*types.VirtualDisk); ok && d.Key == int32(key) {
				cp := *d
				disk = &cp
			}
		}
	})
	if disk == nil {
		soapFault(w, "NotFound", fmt.Sprintf("The object or item referred to could not be found: no virtual disk with key %d", key))
		return
	}
	q.file = ""
	if names := backingChain(disk.Backing); len(names) > 0 {
		q.file = names[0]
	}
	q.chain = localChain(folders, disk.Backing)
	q.capacity = disk.CapacityInBytes
	if q.capacity == 0 {
		q.capacity = disk.CapacityInKB * 1024
	}
	q.changeID = changeIDOf(disk.Backing)

	areas, fault, text := c.changes(&q, on, strings.TrimSpace(*req.ChangeID))
	if fault != "" {
		file := ""
		if fault == "FileFault" {
			file = q.file
		}
		cbtFault(w, fault, file, text)
		return
	}
	if start >= q.capacity {
		soapFault(w, "InvalidArgument", fmt.Sprintf("A specified parameter was not correct: startOffset %d is not below the disk's capacity %d", start, q.capacity))
		return
	}
	end := q.capacity
	if win := c.controlInt("cbt-window"); win > 0 && start+win < end {
		end = start + win
	}
	var out []cbtArea
	for _, a := range areas {
		if a.end <= start || a.start >= end {
			continue
		}
		if a.start < start {
			a.start = start
		}
		if a.end > end {
			a.end = end
		}
		out = append(out, a)
	}
	if max := c.controlInt("cbt-max-areas"); max > 0 && int64(len(out)) > max {
		out = out[:max]
		end = out[len(out)-1].end
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<QueryChangedDiskAreasResponse xmlns="urn:vim25"><returnval><startOffset>%d</startOffset><length>%d</length>`, start, end-start)
	for _, a := range out {
		fmt.Fprintf(&b, `<changedArea><start>%d</start><length>%d</length></changedArea>`, a.start, a.end-a.start)
	}
	b.WriteString(`</returnval></QueryChangedDiskAreasResponse>`)
	soapReply(w, http.StatusOK, b.String())
}

// changes computes the areas of the whole disk, or names the fault and its text.
func (c *cbtTracker) changes(q *queried, on bool, changeID string) ([]cbtArea, string, string) {
	where := "Error caused by file " + q.file
	if !on || q.state == nil {
		return nil, "FileFault", where + ": change tracking is not enabled for this disk"
	}
	if q.changeID == "" {
		return nil, "FileFault", where + ": the disk has no change tracking information at this state (taken while change tracking was off)"
	}
	curUUID, curSeq, ok := splitChangeID(q.changeID)
	if !ok || curUUID != q.uuid {
		return nil, "FileFault", where + ": change tracking was reset after this state; its changeId " + q.changeID + " is no longer valid"
	}
	if changeID == "*" {
		areas, err := c.allocated(q.chain)
		if err != nil {
			return nil, "FileFault", where + ": " + err.Error()
		}
		return areas, "", ""
	}
	uuid, seq, ok := splitChangeID(changeID)
	if !ok {
		return nil, "InvalidArgument", "A specified parameter was not correct: changeId " + changeID
	}
	if uuid != q.uuid {
		return nil, "FileFault", where + ": changeId " + changeID + " is from before a change tracking reset (the disk's tracking is now " + q.uuid + ")"
	}
	if seq > curSeq {
		return nil, "FileFault", fmt.Sprintf("%s: changeId %s is newer than the queried state's %s", where, changeID, q.changeID)
	}
	base, ok := q.points[seq]
	if !ok {
		return nil, "FileFault", where + ": changeId " + changeID + " is unknown to this disk"
	}
	if seq == curSeq && !q.live {
		return nil, "", ""
	}
	inBase := map[string]bool{}
	for _, f := range base {
		inBase[f] = true
	}
	var links []string
	for i, f := range q.chain {
		if !inBase[f] || (q.live && i == 0) {
			links = append(links, f)
		}
	}
	areas, err := c.allocated(links)
	if err != nil {
		return nil, "FileFault", where + ": " + err.Error()
	}
	return areas, "", ""
}

func splitChangeID(id string) (string, int64, bool) {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || seq < 0 {
		return "", 0, false
	}
	return id[:i], seq, true
}

// allocated is the union of the areas allocated in each file alone, rounded out to 64 KiB,
// sorted and merged.
func (c *cbtTracker) allocated(files []string) ([]cbtArea, error) {
	var all []cbtArea
	for _, f := range files {
		areas, err := c.fileAreas(f)
		if err != nil {
			return nil, err
		}
		for _, a := range areas {
			all = append(all, cbtArea{a.start / cbtGrain * cbtGrain, (a.end + cbtGrain - 1) / cbtGrain * cbtGrain})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })
	var out []cbtArea
	for _, a := range all {
		if n := len(out); n > 0 && a.start <= out[n-1].end {
			if a.end > out[n-1].end {
				out[n-1].end = a.end
			}
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// fileAreas is the allocation of one link alone, cached while the file is unchanged.
func (c *cbtTracker) fileAreas(path string) ([]cbtArea, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s %d %d", path, st.Size(), st.ModTime().UnixNano())
	c.mapMu.Lock()
	cached, ok := c.mapCache[key]
	c.mapMu.Unlock()
	if ok {
		return cached, nil
	}
	areas, err := sparseAreas(path)
	if err == errNotHostedSparse {
		areas, err = qemuMapAreas(path)
	}
	if err != nil {
		return nil, err
	}
	c.mapMu.Lock()
	c.mapCache[key] = areas
	c.mapMu.Unlock()
	return areas, nil
}

var errNotHostedSparse = errors.New("not a hosted sparse extent with a grain directory")

// sparseAreas reads the grain tables of a hosted sparse (KDMV) file with its grain directory in
// the header: qemu-img map needs minutes for a multi-terabyte one, this a fraction of a second.
// A grain counts when its entry is not 0 (1 is a zeroed grain: allocated, reads as zeros).
func sparseAreas(path string) ([]cbtArea, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := make([]byte, 512)
	if _, err := io.ReadFull(f, h); err != nil || string(h[:4]) != "KDMV" {
		return nil, errNotHostedSparse
	}
	le := binary.LittleEndian
	flags := le.Uint32(h[8:12])
	capacity := le.Uint64(h[12:20])
	grain := le.Uint64(h[20:28])
	perGT := uint64(le.Uint32(h[44:48]))
	gdOffset := le.Uint64(h[56:64])
	if flags&(1<<16) != 0 || gdOffset == ^uint64(0) || grain == 0 || perGT == 0 ||
		grain > 1<<20 || perGT > 1<<16 || capacity > 1<<40 {
		return nil, errNotHostedSparse // streamOptimized, or values qemu-img should judge
	}
	grains := (capacity + grain - 1) / grain
	nGT := (grains + perGT - 1) / perGT
	gd := make([]byte, nGT*4)
	if _, err := f.ReadAt(gd, int64(gdOffset*512)); err != nil {
		return nil, fmt.Errorf("%s: grain directory: %v", path, err)
	}
	grainBytes := int64(grain * 512)
	var areas []cbtArea
	add := func(start int64) {
		if n := len(areas); n > 0 && areas[n-1].end == start {
			areas[n-1].end += grainBytes
			return
		}
		areas = append(areas, cbtArea{start, start + grainBytes})
	}
	gt := make([]byte, perGT*4)
	for t := uint64(0); t < nGT; t++ {
		gde := le.Uint32(gd[t*4:])
		if gde == 0 {
			continue
		}
		if _, err := f.ReadAt(gt, int64(gde)*512); err != nil {
			return nil, fmt.Errorf("%s: grain table %d: %v", path, t, err)
		}
		for i := uint64(0); i < perGT && t*perGT+i < grains; i++ {
			if le.Uint32(gt[i*4:]) != 0 {
				add(int64(t*perGT+i) * grainBytes)
			}
		}
	}
	end := int64(capacity * 512)
	if n := len(areas); n > 0 && areas[n-1].end > end {
		areas[n-1].end = end
	}
	return areas, nil
}

// qemuMapAreas runs qemu-img map on one link without its backing: "present" areas are its own;
// in a flat extent, holes of the host file (present, zero and data) are not.
func qemuMapAreas(path string) ([]cbtArea, error) {
	flat := flatDescriptor(path)
	spec, _ := json.Marshal(map[string]interface{}{
		"driver":  "vmdk",
		"backing": nil,
		"file":    map[string]string{"driver": "file", "filename": path},
	})
	cmd := exec.Command("qemu-img", "map", "-U", "--output=json", "json:"+string(spec))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("qemu-img map %s: %v: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	var entries []struct {
		Start   int64 `json:"start"`
		Length  int64 `json:"length"`
		Present *bool `json:"present"`
		Data    bool  `json:"data"`
		Zero    bool  `json:"zero"`
		Depth   int   `json:"depth"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, fmt.Errorf("qemu-img map %s: %v", path, err)
	}
	var areas []cbtArea
	for _, e := range entries {
		present := e.Data
		if e.Present != nil {
			present = *e.Present
		}
		if flat && e.Zero && e.Data {
			continue
		}
		if present && e.Depth == 0 && e.Length > 0 {
			areas = append(areas, cbtArea{e.Start, e.Start + e.Length})
		}
	}
	return areas, nil
}

var extentType = regexp.MustCompile(`^(?:RW|RDONLY|NOACCESS)\s+\d+\s+(\w+)`)

// flatDescriptor: a text descriptor whose extents are all FLAT, VMFS or ZERO.
func flatDescriptor(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > 1<<20 || !bytes.HasPrefix(data, []byte("# Disk DescriptorFile")) {
		return false
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		m := extentType.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		n++
		if t := strings.ToUpper(m[1]); t != "FLAT" && t != "VMFS" && t != "ZERO" {
			return false
		}
	}
	return n > 0
}
