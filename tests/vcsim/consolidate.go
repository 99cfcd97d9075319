// ConsolidateVMDisks_Task and runtime.consolidationNeeded, which govmomi 0.24.2 lacks
// (docs/reference/vsphere-backup.md §1). Methods cannot be added to its VirtualMachine from
// outside the package, so the SOAP handler is wrapped: this one call is answered here with a
// simulator Task, every other request goes on unchanged.
//
// The switch for tests: while the file CONTROL/consolidation-fails exists (CONTROL is the
// VCSIM_CONTROL folder), every snapshot removal leaves its VM with consolidationNeeded = true,
// as a removal that could not merge its delta disks does; ConsolidateVMDisks_Task clears it.
package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type consolidation struct {
	controlDir string
}

func (c *consolidation) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VcsimConsolidation", Value: "consolidation"}
}
func (c *consolidation) PutObject(mo.Reference)                            {}
func (c *consolidation) UpdateObject(mo.Reference, []types.PropertyChange) {}

// installConsolidation wraps the server's handler; call it before the server is used.
func installConsolidation(s *simulator.Server, controlDir string) {
	c := &consolidation{controlDir: controlDir}
	simulator.Map.AddHandler(c)
	wrapSOAP(s, func(next http.Handler, w http.ResponseWriter, r *http.Request, body []byte) {
		answered := soapDelay(c.controlDir, body) // soap_delay.go: the tests' delay switch
		defer answered()
		if refuseWithoutPrivilege(w, r, body) { // authz.go: snapshot calls need their privilege
			return
		}
		if !bytes.Contains(body, []byte("<ConsolidateVMDisks_Task")) {
			next.ServeHTTP(w, r)
			return
		}
		c.consolidate(w, r, body)
	})
}

var thisRef = regexp.MustCompile(`<_this[^>]*>([^<]+)</_this>`)

func soapReply(w http.ResponseWriter, status int, inner string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>%s</soapenv:Body></soapenv:Envelope>`, inner)
}

func soapFault(w http.ResponseWriter, fault, text string) {
	soapReply(w, http.StatusInternalServerError, fmt.Sprintf(
		`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring><detail><%sFault xmlns="urn:vim25" xsi:type="%s"></%sFault></detail></soapenv:Fault>`,
		text, fault, fault, fault))
}

func (c *consolidation) consolidate(w http.ResponseWriter, r *http.Request, body []byte) {
	if _, err := r.Cookie("vmware_soap_session"); err != nil {
		soapFault(w, "NotAuthenticated", "The session is not authenticated.")
		return
	}
	m := thisRef.FindSubmatch(body)
	if m == nil {
		soapFault(w, "InvalidRequest", "ConsolidateVMDisks_Task without _this")
		return
	}
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: string(m[1])}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		soapFault(w, "ManagedObjectNotFound", "The object '"+ref.String()+"' has already been deleted or has not been completely created")
		return
	}
	task := simulator.CreateTask(vm, "consolidateVMDisks", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		simulator.Map.WithLock(vm, func() { vm.Runtime.ConsolidationNeeded = types.NewBool(false) })
		return nil, nil
	})
	done := task.Run()
	soapReply(w, http.StatusOK, fmt.Sprintf(
		`<ConsolidateVMDisks_TaskResponse xmlns="urn:vim25"><returnval type="Task">%s</returnval></ConsolidateVMDisks_TaskResponse>`, done.Value))
}

func (c *consolidation) RemoveObject(ref types.ManagedObjectReference) {
	if ref.Type != "VirtualMachineSnapshot" {
		return
	}
	if _, err := os.Stat(filepath.Join(c.controlDir, "consolidation-fails")); err != nil {
		return
	}
	snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return
	}
	// Runs under the VM's lock (RemoveSnapshot_Task holds it).
	if vm, ok := simulator.Map.Get(snap.Vm).(*simulator.VirtualMachine); ok {
		vm.Runtime.ConsolidationNeeded = types.NewBool(true)
	}
}
