// layoutEx file sizes as the datastore holds them now. govmomi's simulator records a file's size
// once, when the file first enters a VM's layoutEx (a ReconfigVM_Task, a snapshot), and never
// again, so a disk written later (the tests make theirs with qemu-img after the model exists)
// would be reported with a stale size. Before each SOAP call the size of every layoutEx file is
// read again from its local file (0 when it is gone), as vSphere reports what the datastore holds.
package main

import (
	"net/http"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
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

func fillLayoutSizes() {
	folders := map[string]string{} // datastore name -> local folder
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		folders[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		simulator.Map.WithLock(vm, func() {
			if vm.LayoutEx == nil {
				return
			}
			for i := range vm.LayoutEx.File {
				f := &vm.LayoutEx.File[i]
				var p object.DatastorePath
				if !p.FromString(f.Name) {
					continue
				}
				folder, ok := folders[p.Datastore]
				if !ok {
					continue
				}
				var size int64
				if st, err := os.Stat(filepath.Join(folder, p.Path)); err == nil {
					size = st.Size()
				}
				f.Size = size
				f.UniqueSize = size
			}
		})
	}
}
