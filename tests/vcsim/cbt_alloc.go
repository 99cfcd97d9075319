// Allocation of one link of a disk chain alone, for cbt_query.go: qemu-img's view (`qemu-img
// map` with no backing), or, for hosted sparse extents, the grain tables read here.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
)

const cbtGrain = 64 << 10 // areas are rounded out to this, as vSphere's false positives are

type cbtArea struct{ start, end int64 }

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
