// Sample VMs: -samples DIR places the VMDK files of DIR/disks/<VM name>/ into that VM's folder on its
// datastore, then runs DIR/plan through the vSphere API (SOAP, as any client would), one step per
// line, in order:
//
//	<vm name> disk <file> <capacity bytes> [<parent file> ...]   point the VM's first disk at file
//	<vm name> snapshot <name> [description ...]                  CreateSnapshot_Task
//	<vm name> create <like vm>                                   CreateVM_Task
//
// create makes a VM the model does not have (the VMFS6 sample) with one SCSI disk, in the folder,
// resource pool, host and datastore of <like vm>, then places DIR/disks/<vm name>/ in its folder.
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
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// copyFile copies sparsely: blocks of zeros become holes, so a 1 GiB flat sample costs what its
// data costs.
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
	buf := make([]byte, 64<<10)
	var size int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if bytes.Count(buf[:n], []byte{0}) == n {
				_, werr := out.Seek(int64(n), io.SeekCurrent)
				err = werr
			} else if _, werr := out.Write(buf[:n]); werr != nil {
				err = werr
			}
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(size); err != nil {
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

// placeSamples places the disks of every VM that exists; it returns the folders of DIR/disks/
// whose VM a plan step still has to create.
func placeSamples(dir string, vms map[string]sampleVM) (map[string]bool, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "disks"))
	if err != nil {
		return nil, err
	}
	pending := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		vm, ok := vms[e.Name()]
		if !ok {
			pending[e.Name()] = true
			continue
		}
		if err := placeVM(dir, e.Name(), vm); err != nil {
			return nil, err
		}
	}
	return pending, nil
}

// placeVM copies DIR/disks/<name>/ into the VM's folder.
func placeVM(dir, name string, vm sampleVM) error {
	from := filepath.Join(dir, "disks", name)
	files, err := os.ReadDir(from)
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
		if err := copyFile(filepath.Join(from, f.Name()), filepath.Join(vm.folder, f.Name())); err != nil {
			return err
		}
	}
	for _, f := range files {
		name := f.Name()
		if !strings.HasSuffix(name, ".vmdk") || strings.HasSuffix(name, "-flat.vmdk") ||
			strings.HasSuffix(name, "-sesparse.vmdk") {
			continue
		}
		flat := filepath.Join(vm.folder, strings.TrimSuffix(name, ".vmdk")+"-flat.vmdk")
		if _, err := os.Stat(flat); os.IsNotExist(err) {
			if err := os.WriteFile(flat, nil, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// createVM makes a VM named name beside like (its folder, pool, host and datastore) with a SCSI
// controller and one disk, as the simulator's model makes its VMs.
func createVM(ctx context.Context, c *govmomi.Client, name string, like sampleVM) (sampleVM, error) {
	var folder, pool, host, ds types.ManagedObjectReference
	simulator.Map.WithLock(simulator.Map.Get(like.ref), func() {
		vm := simulator.Map.Get(like.ref).(*simulator.VirtualMachine)
		folder, pool, host, ds = *vm.Parent, *vm.ResourcePool, *vm.Runtime.Host, vm.Datastore[0]
	})
	config := types.VirtualMachineConfigSpec{
		Name:    name,
		GuestId: string(types.VirtualMachineGuestOsIdentifierOtherGuest),
		Files:   &types.VirtualMachineFileInfo{VmPathName: "[" + like.datastore + "]"},
	}
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("pvscsi")
	if err != nil {
		return sampleVM{}, err
	}
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), ds,
		fmt.Sprintf("[%s] %s/disk1.vmdk", like.datastore, name))
	disk.CapacityInKB = 1024
	devices = append(devices, scsi, disk)
	if config.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd); err != nil {
		return sampleVM{}, err
	}
	task, err := object.NewFolder(c.Client, folder).CreateVM(ctx, config,
		object.NewResourcePool(c.Client, pool), object.NewHostSystem(c.Client, host))
	var info *types.TaskInfo
	if err == nil {
		info, err = task.WaitForResult(ctx, nil)
	}
	if err != nil {
		return sampleVM{}, fmt.Errorf("CreateVM_Task: %v", err)
	}
	ref, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return sampleVM{}, fmt.Errorf("CreateVM_Task returned %T", info.Result)
	}
	return sampleVM{ref, like.datastore, filepath.Join(filepath.Dir(like.folder), name)}, nil
}

func runSamplePlan(ctx context.Context, c *govmomi.Client, dir string, vms map[string]sampleVM, pending map[string]bool) error {
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
		if words[1] == "create" {
			if _, ok := vms[words[0]]; ok {
				return fail("%s exists already", words[0])
			}
			like, ok := vms[words[2]]
			if !ok {
				return fail("no VM named %s", words[2])
			}
			vm, err := createVM(ctx, c, words[0], like)
			if err != nil {
				return fail("%v", err)
			}
			vms[words[0]] = vm
			if pending[words[0]] {
				if err := placeVM(dir, words[0], vm); err != nil {
					return fail("%v", err)
				}
				delete(pending, words[0])
			}
			continue
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
	if err := sc.Err(); err != nil {
		return err
	}
	var missing []string
	for name := range pending {
		missing = append(missing, "disks/"+name)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%s: no VM of that name, and the plan creates none", strings.Join(missing, ", "))
	}
	return nil
}

// setUpSamples runs once the server listens; u carries the credentials Login accepts.
func setUpSamples(dir string, u *url.URL) error {
	vms := findSampleVMs()
	pending, err := placeSamples(dir, vms)
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return fmt.Errorf("login: %v", err)
	}
	defer c.Logout(ctx)
	return runSamplePlan(ctx, c, dir, vms, pending)
}
