// AuthorizationManager's internal DisableMethods / EnableMethods (namespace urn:internalvim25,
// absent from govmomi): what VDDK's PrepareForAccess and EndAccess call to block Storage vMotion
// during a backup. The request types are registered with types.Add so the simulator decodes
// them; the AuthorizationManager in the registry is replaced by a wrapper that adds the methods
// (docs/reference/vsphere-backup.md §4–§5). Each method stays disabled while any source still
// disables it; clients see the wire names in the entity's disabledMethod.
//
// The wrapper also answers HasPrivilegeOnEntities / HasPrivilegeOnEntity from the roles and
// permissions set through the API (govmomi grants everything): the session's user is found
// from sessionId, the first permission naming that user on the path from the entity up to the
// root decides (an ancestor's only when it propagates), and the role's privileges answer
// (System.Anonymous/View/Read implied except for NoAccess, Admin has every privilege). Only
// user permissions count, not groups. A user with no permission anywhere is treated as an
// administrator, so that tests which never set permissions keep working. DisableMethods and
// EnableMethods refuse a user without Global.DisableMethods / Global.EnableMethods on the root
// folder with NoPermission, as vCenter does.
package main

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
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

// theAuthz is the wrapper in the registry, for refuseWithoutPrivilege.
var theAuthz *authzManager

// installAuthz replaces the registry's AuthorizationManager with one that knows DisableMethods.
func installAuthz() {
	si := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance)
	orig := simulator.Map.Get(*si.Content.AuthorizationManager).(*simulator.AuthorizationManager)
	theAuthz = &authzManager{
		AuthorizationManager: *orig,
		disabled:             map[types.ManagedObjectReference]map[string]map[string]bool{},
	}
	simulator.Map.Put(theAuthz)
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

func (m *authzManager) DisableMethods(ctx *simulator.Context, req *DisableMethods) soap.HasFault {
	if fault := m.requireOnRoot(ctx, "Global.DisableMethods"); fault != nil {
		return fault
	}
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

func (m *authzManager) EnableMethods(ctx *simulator.Context, req *EnableMethods) soap.HasFault {
	if fault := m.requireOnRoot(ctx, "Global.EnableMethods"); fault != nil {
		return fault
	}
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

// rootFolder is the inventory's root, where vCenter grants the Global.* privileges.
func rootFolder() types.ManagedObjectReference {
	return simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance).Content.RootFolder
}

// noPermission is the fault vCenter answers when the session lacks priv on obj.
func noPermission(obj types.ManagedObjectReference, priv string) soap.HasFault {
	return faultBody("Permission to perform this operation was denied.",
		&types.NoPermission{Object: obj, PrivilegeId: priv})
}

// requireOnRoot refuses the calling session without priv on the root folder (callers do not
// hold m.mu).
func (m *authzManager) requireOnRoot(ctx *simulator.Context, priv string) soap.HasFault {
	if ctx.Session == nil {
		return faultBody("The session is not authenticated.", &types.NotAuthenticated{})
	}
	root := rootFolder()
	if !m.granted(ctx.Session.UserName, root, priv) {
		return noPermission(root, priv)
	}
	return nil
}

// userOfSession is the user name of the session whose key is id: the caller's own, else one of
// the SessionManager's sessionList (the session view a property collector reads).
func userOfSession(ctx *simulator.Context, id string) (string, bool) {
	if ctx != nil && ctx.Session != nil && ctx.Session.Key == id {
		return ctx.Session.UserName, true
	}
	view := (&simulator.Session{Registry: simulator.NewRegistry()}).Get(
		*simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance).Content.SessionManager)
	if sm, ok := view.(*simulator.SessionManager); ok {
		for _, s := range sm.SessionList {
			if s.Key == id {
				return s.UserName, true
			}
		}
	}
	return "", false
}

// permissionsOf lists every permission set through the API, by entity.
func (m *authzManager) permissionsOf() map[types.ManagedObjectReference][]types.Permission {
	out := map[types.ManagedObjectReference][]types.Permission{}
	body := m.AuthorizationManager.RetrieveAllPermissions(&types.RetrieveAllPermissions{})
	if b, ok := body.(*methods.RetrieveAllPermissionsBody); ok && b.Res != nil {
		for _, p := range b.Res.Returnval {
			if p.Entity != nil {
				out[*p.Entity] = append(out[*p.Entity], p)
			}
		}
	}
	return out
}

// roleGrants says whether the role with that id holds priv.
func (m *authzManager) roleGrants(roleID int32, priv string) bool {
	if roleID == -1 { // Admin
		return true
	}
	for _, role := range m.RoleList {
		if role.RoleId != roleID {
			continue
		}
		if role.Name != "NoAccess" &&
			(priv == "System.Anonymous" || priv == "System.View" || priv == "System.Read") {
			return true
		}
		for _, p := range role.Privilege {
			if p == priv {
				return true
			}
		}
		return false
	}
	return false
}

// granted computes whether user holds priv on entity.
func (m *authzManager) granted(user string, entity types.ManagedObjectReference, priv string) bool {
	perms := m.permissionsOf()
	anywhere := false
	for _, list := range perms {
		for _, p := range list {
			if !p.Group && p.Principal == user {
				anywhere = true
			}
		}
	}
	if !anywhere {
		return true // never given a permission: the simulator's administrator
	}
	ref := &entity
	for depth := 0; ref != nil && depth < 1000; depth++ {
		for _, p := range perms[*ref] {
			if p.Group || p.Principal != user || (*ref != entity && !p.Propagate) {
				continue
			}
			return m.roleGrants(p.RoleId, priv)
		}
		e, ok := simulator.Map.Get(*ref).(mo.Entity)
		if !ok {
			break
		}
		ref = e.Entity().Parent
	}
	return false
}

func (m *authzManager) HasPrivilegeOnEntities(ctx *simulator.Context, req *types.HasPrivilegeOnEntities) soap.HasFault {
	user, ok := userOfSession(ctx, req.SessionId)
	if !ok {
		return faultBody("no session "+req.SessionId, &types.InvalidArgument{InvalidProperty: "sessionId"})
	}
	if _, fault := m.entities(req.Entity); fault != nil {
		return fault
	}
	var out []types.EntityPrivilege
	for _, e := range req.Entity {
		ep := types.EntityPrivilege{Entity: e}
		for _, id := range req.PrivId {
			ep.PrivAvailability = append(ep.PrivAvailability,
				types.PrivilegeAvailability{PrivId: id, IsGranted: m.granted(user, e, id)})
		}
		out = append(out, ep)
	}
	return &methods.HasPrivilegeOnEntitiesBody{
		Res: &types.HasPrivilegeOnEntitiesResponse{Returnval: out},
	}
}

func (m *authzManager) HasPrivilegeOnEntity(ctx *simulator.Context, req *types.HasPrivilegeOnEntity) soap.HasFault {
	user, ok := userOfSession(ctx, req.SessionId)
	if !ok {
		return faultBody("no session "+req.SessionId, &types.InvalidArgument{InvalidProperty: "sessionId"})
	}
	if _, fault := m.entities([]types.ManagedObjectReference{req.Entity}); fault != nil {
		return fault
	}
	out := make([]bool, len(req.PrivId))
	for i, id := range req.PrivId {
		out[i] = m.granted(user, req.Entity, id)
	}
	return &methods.HasPrivilegeOnEntityBody{Res: &types.HasPrivilegeOnEntityResponse{Returnval: out}}
}

// AddAuthorizationRole answers the new role's id, which govmomi leaves out.
func (m *authzManager) AddAuthorizationRole(req *types.AddAuthorizationRole) soap.HasFault {
	body := m.AuthorizationManager.AddAuthorizationRole(req)
	if b, ok := body.(*methods.AddAuthorizationRoleBody); ok && b.Res != nil {
		// govmomi numbers new roles from 0, which is NoAccess's id: a new role gets the next id
		// above every role's and above 999, where vCenter's own custom roles start.
		next := int32(999)
		for _, role := range m.RoleList {
			if role.Name != req.Name && role.RoleId > next {
				next = role.RoleId
			}
		}
		for i := range m.RoleList {
			if m.RoleList[i].Name == req.Name {
				m.RoleList[i].RoleId = next + 1
				b.Res.Returnval = next + 1
			}
		}
	}
	return body
}

// SetEntityPermissions adds or updates the rules of each principal named, keeping the others, as
// vCenter does (govmomi replaces the entity's whole list); an unknown role is refused.
func (m *authzManager) SetEntityPermissions(req *types.SetEntityPermissions) soap.HasFault {
	if _, fault := m.entities([]types.ManagedObjectReference{req.Entity}); fault != nil {
		return fault
	}
	for _, p := range req.Permission {
		known := false
		for _, role := range m.RoleList {
			known = known || role.RoleId == p.RoleId
		}
		if !known {
			return faultBody("no role with id", &types.NotFound{})
		}
	}
	merged := m.permissionsOf()[req.Entity]
	for _, p := range req.Permission {
		entity := req.Entity
		p.Entity = &entity
		replaced := false
		for i := range merged {
			if merged[i].Principal == p.Principal && merged[i].Group == p.Group {
				merged[i], replaced = p, true
			}
		}
		if !replaced {
			merged = append(merged, p)
		}
	}
	return m.AuthorizationManager.SetEntityPermissions(&types.SetEntityPermissions{
		This: req.This, Entity: req.Entity, Permission: merged,
	})
}

// privilegedCalls are VirtualMachine / snapshot methods the simulator cannot refuse by itself (its
// VirtualMachine objects cannot be wrapped), with the privilege vCenter checks on the VM.
var privilegedCalls = map[string]string{
	"CreateSnapshot_Task":     "VirtualMachine.State.CreateSnapshot",
	"RemoveSnapshot_Task":     "VirtualMachine.State.RemoveSnapshot",
	"RemoveAllSnapshots_Task": "VirtualMachine.State.RemoveSnapshot",
	"ConsolidateVMDisks_Task": "VirtualMachine.State.RemoveSnapshot",
	"RevertToSnapshot_Task":   "VirtualMachine.State.RevertToSnapshot",
}

var soapCall = regexp.MustCompile(`<(?:[\w.-]+:)?(\w+)[^>]*>\s*<(?:[\w.-]+:)?_this[^>]*type="(\w+)"[^>]*>([^<]+)</`)

// refuseWithoutPrivilege answers a call of privilegedCalls with vCenter's NoPermission when the
// session (its cookie) lacks the privilege on the VM (a snapshot's VM for snapshot methods), and
// says whether it did; for a SOAP handler wrapper, before it hands the request on.
func refuseWithoutPrivilege(w http.ResponseWriter, r *http.Request, body []byte) bool {
	m := soapCall.FindSubmatch(body)
	if m == nil || theAuthz == nil {
		return false
	}
	priv, ok := privilegedCalls[string(m[1])]
	if !ok {
		return false
	}
	cookie, err := r.Cookie("vmware_soap_session")
	if err != nil {
		return false // the simulator answers NotAuthenticated itself
	}
	user, ok := userOfSession(nil, cookie.Value)
	if !ok {
		return false
	}
	vm := types.ManagedObjectReference{Type: string(m[2]), Value: string(m[3])}
	if vm.Type == "VirtualMachineSnapshot" {
		snap, ok := simulator.Map.Get(vm).(*simulator.VirtualMachineSnapshot)
		if !ok {
			return false
		}
		vm = snap.Vm
	}
	if _, ok := simulator.Map.Get(vm).(mo.Entity); !ok {
		return false
	}
	granted := true
	simulator.Map.WithLock(theAuthz, func() { granted = theAuthz.granted(user, vm, priv) })
	if granted {
		return false
	}
	soapReply(w, http.StatusInternalServerError, fmt.Sprintf(
		`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Permission to perform this operation was denied.</faultstring><detail><NoPermissionFault xmlns="urn:vim25" xsi:type="NoPermission"><object type="%s">%s</object><privilegeId>%s</privilegeId></NoPermissionFault></detail></soapenv:Fault>`,
		vm.Type, vm.Value, priv))
	return true
}
