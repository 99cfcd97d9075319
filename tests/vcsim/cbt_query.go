// QueryChangedDiskAreas for cbt.go: the request decoded, the areas between the two points
// computed (cbt_alloc.go), cut to the reply's window, and vSphere's faults.
package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

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
	var disk *types.VirtualDisk
	q.live = req.Snapshot == nil || strings.TrimSpace(*req.Snapshot) == ""
	simulator.Map.WithLock(vm, func() {
		on = cbtOn(vm)
		if q.live && vm.Config != nil {
			disk = findDisk(vm.Config.Hardware.Device, int32(key))
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
	if !q.live {
		ref := types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: strings.TrimSpace(*req.Snapshot)}
		snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
		if !ok || snap.Vm != vm.Self {
			soapFault(w, "ManagedObjectNotFound", "The object '"+ref.String()+"' has already been deleted or has not been completely created")
			return
		}
		simulator.Map.WithLock(snap, func() { disk = findDisk(snap.Config.Hardware.Device, int32(key)) })
	}
	if disk == nil {
		soapFault(w, "NotFound", fmt.Sprintf("The object or item referred to could not be found: no virtual disk with key %d", key))
		return
	}
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

// findDisk is a copy of the VirtualDisk with that key (nil when none); the caller holds the lock
// of the object whose devices these are.
func findDisk(devices []types.BaseVirtualDevice, key int32) *types.VirtualDisk {
	for _, dev := range devices {
		if d, ok := dev.(*types.VirtualDisk); ok && d.Key == key {
			cp := *d
			return &cp
		}
	}
	return nil
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
