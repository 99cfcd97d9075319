// AuthorizationManager's internal DisableMethods / EnableMethods (namespace urn:internalvim25,
// absent from govmomi): what VDDK's PrepareForAccess and EndAccess call to block Storage vMotion
// during a backup. The request types are registered with types.Add so the simulator decodes
// them; the AuthorizationManager in the registry is replaced by a wrapper that adds the methods
// (docs/reference/vsphere-backup.md §4–§5). Each method stays disabled while any source still
// disables it; clients see the wire names in the entity's disabledMethod.
package main

import (
	"reflect"
	"sort"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type DisabledMethodRequest struct {
	Method   string `xml:"method"`
	ReasonId string `xml:"reasonId,omitempty"`
}

type DisableMethods struct {
	This         types.ManagedObjectReference   `xml:"_this"`
	Entity       []types.ManagedObjectReference `xml:"entity"`
	Method       []DisabledMethodRequest        `xml:"method"`
	SourceId     string                         `xml:"sourceId"`
	SessionScope *bool                          `xml:"sessionScope,omitempty"`
}

type EnableMethods struct {
	This     types.ManagedObjectReference   `xml:"_this"`
	Entity   []types.ManagedObjectReference `xml:"entity"`
	Method   []string                       `xml:"method"`
	SourceId string                         `xml:"sourceId"`
}

type DisableMethodsResponse struct{}
type EnableMethodsResponse struct{}

type disableMethodsBody struct {
	nfcFaultBody
	Res *DisableMethodsResponse
}
type enableMethodsBody struct {
	nfcFaultBody
	Res *EnableMethodsResponse
}

func init() {
	for _, v := range []interface{}{DisableMethods{}, EnableMethods{}, DisableMethodsResponse{},
		EnableMethodsResponse{}} {
		t := reflect.TypeOf(v)
		types.Add(t.Name(), t)
	}
}

// authzManager embeds the simulator's by value: the property collector digs the mo type out of
// the first field, which must be a struct.
type authzManager struct {
	simulator.AuthorizationManager
	mu       sync.Mutex
	disabled map[types.ManagedObjectReference]map[string]map[string]bool // entity -> method -> sources
}

// installAuthz replaces the registry's AuthorizationManager with one that knows DisableMethods.
func installAuthz() {
	si := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance)
	orig := simulator.Map.Get(*si.Content.AuthorizationManager).(*simulator.AuthorizationManager)
	simulator.Map.Put(&authzManager{
		AuthorizationManager: *orig,
		disabled:             map[types.ManagedObjectReference]map[string]map[string]bool{},
	})
}

func (m *authzManager) entities(refs []types.ManagedObjectReference) ([]mo.Entity, soap.HasFault) {
	var out []mo.Entity
	for _, ref := range refs {
		e, ok := simulator.Map.Get(ref).(mo.Entity)
		if !ok {
			return nil, faultBody("managed object not found: "+ref.String(), &types.ManagedObjectNotFound{Obj: ref})
		}
		out = append(out, e)
	}
	return out, nil
}

// publish sets each entity's disabledMethod from the bookkeeping (callers hold m.mu).
func (m *authzManager) publish(e mo.Entity) {
	var names []string
	for method, sources := range m.disabled[e.Reference()] {
		if len(sources) > 0 {
			names = append(names, method)
		}
	}
	sort.Strings(names)
	simulator.Map.WithLock(e, func() {
		simulator.Map.Update(e, []types.PropertyChange{{Name: "disabledMethod", Val: names}})
	})
}

func (m *authzManager) DisableMethods(req *DisableMethods) soap.HasFault {
	if req.SourceId == "" {
		return faultBody("sourceId is required", &types.InvalidArgument{InvalidProperty: "sourceId"})
	}
	ents, fault := m.entities(req.Entity)
	if fault != nil {
		return fault
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ents {
		byMethod := m.disabled[e.Reference()]
		if byMethod == nil {
			byMethod = map[string]map[string]bool{}
			m.disabled[e.Reference()] = byMethod
		}
		for _, dm := range req.Method {
			if byMethod[dm.Method] == nil {
				byMethod[dm.Method] = map[string]bool{}
			}
			byMethod[dm.Method][req.SourceId] = true
		}
		m.publish(e)
	}
	return &disableMethodsBody{Res: &DisableMethodsResponse{}}
}

func (m *authzManager) EnableMethods(req *EnableMethods) soap.HasFault {
	ents, fault := m.entities(req.Entity)
	if fault != nil {
		return fault
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ents {
		for _, method := range req.Method {
			delete(m.disabled[e.Reference()][method], req.SourceId)
		}
		m.publish(e)
	}
	return &enableMethodsBody{Res: &EnableMethodsResponse{}}
}
