// Sample VMs: -samples DIR places the VMDK files of DIR/disks/<VM name>/ into that VM's folder on its
// datastore, then runs DIR/plan through the vSphere API (SOAP, as any client would), one step per
// line, in order:
//
//	<vm name> disk <file> <capacity bytes> [<parent file> ...]   point the VM's first disk at file
//	<vm name> snapshot <name> [description ...]                  CreateSnapshot_Task
//
// A delta chain is made the way vSphere makes one: snapshot the base, then point the live disk at
// the child.
//
// Two simulator quirks are worked around here, not in the tests: the simulator checks that an
// existing disk exists by its "-flat.vmdk" name, so each placed disk gets an empty one when it has
// none; and a snapshot shares the VM's device array, so a later ReconfigVM_Task would change the
// snapshot's disks too: each new snapshot gets its own copy of the array.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

type sampleVM struct {
	ref       types.ManagedObjectReference
	datastore string // name
	folder    string // local folder of the VM's files
}

func findSampleVMs() map[string]sampleVM {
	vms := map[string]sampleVM{}
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		if len(vm.Datastore) == 0 {
			continue
		}
		ds := simulator.Map.Get(vm.Datastore[0]).(*simulator.Datastore)
		vms[vm.Name] = sampleVM{vm.Self, ds.Name, filepath.Join(ds.Info.GetDatastoreInfo().Url, vm.Name)}
	}
	return vms
}

func placeSamples(dir string, vms map[string]sampleVM) error {
	dir = filepath.Join(dir, "disks")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		vm, ok := vms[e.Name()]
		if !ok {
			return fmt.Errorf("%s: no VM of that name", e.Name())
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(vm.folder, 0o755); err != nil {
			return err
		}
		// The model's empty placeholder disk goes, or its -flat file would linger beside a
		// sparse sample.
		old, _ := filepath.Glob(filepath.Join(vm.folder, "disk1*.vmdk"))
		for _, f := range old {
			os.Remove(f)
		}
		for _, f := range files {
			if err := copyFile(filepath.Join(dir, e.Name(), f.Name()), filepath.Join(vm.folder, f.Name())); err != nil {
				return err
			}
		}
		for _, f := range files {
			name := f.Name()
			if !strings.HasSuffix(name, ".vmdk") || strings.HasSuffix(name, "-flat.vmdk") {
				continue
			}
			flat := filepath.Join(vm.folder, strings.TrimSuffix(name, ".vmdk")+"-flat.vmdk")
			if _, err := os.Stat(flat); os.IsNotExist(err) {
				if err := os.WriteFile(flat, nil, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func runSamplePlan(ctx context.Context, c *govmomi.Client, dir string, vms map[string]sampleVM) error {
	f, err := os.Open(filepath.Join(dir, "plan"))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		words := strings.Fields(sc.Text())
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		fail := func(format string, args ...interface{}) error {
			return fmt.Errorf("plan:%d: "+format, append([]interface{}{n}, args...)...)
		}
		if len(words) < 3 {
			return fail("want: <vm> disk|snapshot ...")
		}
		vm, ok := vms[words[0]]
		if !ok {
			return fail("no VM named %s", words[0])
		}
		obj := object.NewVirtualMachine(c.Client, vm.ref)
		dsPath := func(file string) string { return fmt.Sprintf("[%s] %s/%s", vm.datastore, words[0], file) }
		switch words[1] {
		case "snapshot":
			task, err := obj.CreateSnapshot(ctx, words[2], strings.Join(words[3:], " "), false, false)
			var info *types.TaskInfo
			if err == nil {
				info, err = task.WaitForResult(ctx, nil)
			}
			if err != nil {
				return fail("CreateSnapshot: %v", err)
			}
			ref, ok := info.Result.(types.ManagedObjectReference)
			if !ok {
				return fail("CreateSnapshot returned %T", info.Result)
			}
			snap := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
			simulator.Map.WithLock(snap, func() {
				hw := &snap.Config.Hardware
				hw.Device = append([]types.BaseVirtualDevice(nil), hw.Device...)
			})
		case "disk":
			if len(words) < 4 {
				return fail("want: <vm> disk <file> <capacity bytes> [parents...]")
			}
			capacity, err := strconv.ParseInt(words[3], 10, 64)
			if err != nil {
				return fail("capacity %q: %v", words[3], err)
			}
			devices, err := obj.Device(ctx)
			if err != nil {
				return fail("devices: %v", err)
			}
			disks := devices.SelectByType((*types.VirtualDisk)(nil))
			if len(disks) == 0 {
				return fail("%s has no disk", words[0])
			}
			disk := disks[0].(*types.VirtualDisk)
			old, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				return fail("%s: disk backing is %T", words[0], disk.Backing)
			}
			backing := *old
			backing.FileName = dsPath(words[2])
			backing.Parent = nil
			link := &backing
			for _, parent := range words[4:] {
				p := &types.VirtualDiskFlatVer2BackingInfo{DiskMode: old.DiskMode}
				p.FileName = dsPath(parent)
				link.Parent = p
				link = p
			}
			disk.Backing = &backing
			disk.CapacityInBytes = capacity
			disk.CapacityInKB = capacity / 1024
			// Not obj.EditDevice: it asks for fileOperation "replace", which empties the file.
			spec := types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
				&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: disk},
			}}
			task, err := obj.Reconfigure(ctx, spec)
			if err == nil {
				err = task.Wait(ctx)
			}
			if err != nil {
				return fail("ReconfigVM_Task: %v", err)
			}
		default:
			return fail("unknown step %q", words[1])
		}
	}
	return sc.Err()
}

// setUpSamples runs once the server listens; u carries the credentials Login accepts.
func setUpSamples(dir string, u *url.URL) error {
	vms := findSampleVMs()
	if err := placeSamples(dir, vms); err != nil {
		return err
	}
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return fmt.Errorf("login: %v", err)
	}
	defer c.Logout(ctx)
	return runSamplePlan(ctx, c, dir, vms)
}
