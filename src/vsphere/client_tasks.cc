// Tasks: start one, then poll its info with back-off until it ends.
#include <thread>

#include "vsphere/client.h"
#include "vsphere/client_internal.h"

namespace vix::vsphere {

using detail::prop_set;

Result<TaskOutcome> Client::wait_for_task(const std::string& task,
                                          std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto delay = std::chrono::milliseconds(20);
  for (;;) {
    std::string state, result, fault_type, message;
    bool seen = false;
    VIX_TRY(retrieve("<specSet>" + prop_set("Task", {"info.state", "info.result", "info.error"}) +
                         "<objectSet>" + moref_xml("obj", "Task", task) + "</objectSet></specSet>",
                     [&](const ObjectContent& oc) -> Result<void> {
                       seen = true;
                       state = oc.find("info.state").child_value();
                       result = oc.find("info.result").child_value();
                       pugi::xml_node err = oc.find("info.error");
                       fault_type = xsi_type(child(err, "fault"));
                       message = child_text(err, "localizedMessage");
                       return ok();
                     }));
    if (!seen) return fail(VIX_E_OBJECT_NOT_FOUND, "vSphere task " + task + " not found");
    if (state == "success") return TaskOutcome{state, result};
    if (state == "error") {
      std::string msg = "vSphere task " + task + " failed: " +
                        (fault_type.empty() ? std::string("(untyped fault)") : fault_type);
      if (!message.empty()) msg += ": " + message.substr(0, 1024);
      return fail(fault_code(fault_type), msg);
    }
    if (state != "queued" && state != "running") {
      return fail(VIX_E_INVALID_XML,
                  "vSphere task " + task + ": unknown state '" + state.substr(0, 64) + "'");
    }
    if (std::chrono::steady_clock::now() + delay > deadline) {
      return fail(VIX_E_HOST_TCP_CONN_LOST, "vSphere task " + task + " still " + state + " after " +
                                                std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

static Result<std::string> task_of(const SoapResponse& r, const std::string& method) {
  std::string task = child_text(r.body, "returnval");
  if (task.empty())
    return fail(VIX_E_INVALID_XML, "vSphere " + method + ": no task in the response");
  return task;
}

Result<std::string> Client::create_snapshot(const std::string& vm, const std::string& name,
                                            const std::string& description, bool memory,
                                            bool quiesce) {
  if (!xml_safe(name) || !xml_safe(description)) {
    return fail(VIX_E_INVALID_ARG, "snapshot name/description: control characters");
  }
  VIX_ASSIGN_OR_RETURN(SoapResponse r,
                       call("CreateSnapshot_Task", {"VirtualMachine", vm},
                            text_xml("name", name) + text_xml("description", description) +
                                "<memory>" + (memory ? "true" : "false") + "</memory><quiesce>" +
                                (quiesce ? "true" : "false") + "</quiesce>"));
  VIX_ASSIGN_OR_RETURN(std::string task, task_of(r, "CreateSnapshot_Task"));
  VIX_ASSIGN_OR_RETURN(TaskOutcome out, wait_for_task(task));
  if (out.result.empty()) {
    return fail(VIX_E_INVALID_XML, "vSphere CreateSnapshot_Task: no snapshot moRef in the result");
  }
  return out.result;
}

Result<void> Client::run_task(const std::string& method, const MoRef& this_ref,
                              const std::string& body) {
  VIX_ASSIGN_OR_RETURN(SoapResponse r, call(method, this_ref, body));
  VIX_ASSIGN_OR_RETURN(std::string task, task_of(r, method));
  VIX_TRY(wait_for_task(task));
  return ok();
}

Result<void> Client::remove_snapshot(const std::string& snapshot, bool remove_children) {
  return run_task("RemoveSnapshot_Task", {"VirtualMachineSnapshot", snapshot},
                  std::string("<removeChildren>") + (remove_children ? "true" : "false") +
                      "</removeChildren><consolidate>true</consolidate>");
}

Result<void> Client::set_change_tracking(const std::string& vm, bool enabled) {
  return run_task("ReconfigVM_Task", {"VirtualMachine", vm},
                  std::string("<spec><changeTrackingEnabled>") + (enabled ? "true" : "false") +
                      "</changeTrackingEnabled></spec>");
}

Result<void> Client::power_off(const std::string& vm) {
  return run_task("PowerOffVM_Task", {"VirtualMachine", vm}, "");
}

Result<void> Client::consolidate_disks(const std::string& vm) {
  return run_task("ConsolidateVMDisks_Task", {"VirtualMachine", vm}, "");
}

Result<std::vector<std::string>> Client::needing_consolidation(
    const std::vector<std::string>& vms) {
  std::vector<std::string> out;
  if (vms.empty()) return out;
  std::string spec = "<specSet>" + prop_set("VirtualMachine", {"runtime.consolidationNeeded"});
  for (const std::string& vm : vms) {
    spec += "<objectSet>" + moref_xml("obj", "VirtualMachine", vm) + "</objectSet>";
  }
  VIX_TRY(retrieve(spec + "</specSet>", [&](const ObjectContent& oc) -> Result<void> {
    if (std::string_view(oc.find("runtime.consolidationNeeded").child_value()) == "true") {
      out.push_back(oc.obj.value);
    }
    return ok();
  }));
  return out;
}

Result<void> Client::destroy_vm(const std::string& vm) {
  return run_task("Destroy_Task", {"VirtualMachine", vm}, "");
}

}  // namespace vix::vsphere
