// A guest that cannot be quiesced. govmomi 0.24.2 records `quiesce` on a snapshot and always
// succeeds; vSphere fails the snapshot when VMware Tools cannot quiesce the guest
// (ApplicationQuiesceFault). The switch for tests: while CONTROL/quiesce-fails exists, every
// CreateSnapshot_Task that asks for quiescing is refused with that fault (as a fault of the call,
// not of its task: both reach a client as the server's refusal). Other requests go on unchanged.
package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/simulator"
)

func installQuiesceFault(s *simulator.Server, controlDir string) {
	wrapSOAP(s, func(next http.Handler, w http.ResponseWriter, r *http.Request, body []byte) {
		if _, err := os.Stat(filepath.Join(controlDir, "quiesce-fails")); err == nil &&
			bytes.Contains(body, []byte("<CreateSnapshot_Task")) &&
			bytes.Contains(body, []byte("<quiesce>true</quiesce>")) {
			soapFault(w, "ApplicationQuiesceFault", "An error occurred while quiescing the virtual machine. See the virtual machine's event log for details.")
			return
		}
		next.ServeHTTP(w, r)
	})
}
