// A generic delay switch for tests that need a SOAP call in flight: while the file
// CONTROL/delay-<WireMethodName> (e.g. delay-CreateSnapshot_Task, delay-DisableMethods) holds a
// number of milliseconds, every call of that method waits that long before the simulator handles
// it. A test can then see the call arrive, kill its client, and know that the server still
// carries the call out afterwards, as a real vCenter does with a request it has received.
//
// So that tests poll instead of guessing, each delayed call appends two lines to CONTROL/delayed:
// "begin <method>" when it arrives (before the wait) and "end <method>" once the simulator has
// answered it (its effect is then visible).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The first element inside the SOAP Body is the call; its local name is the wire method name.
var soapBodyCall = regexp.MustCompile(`<(?:[A-Za-z0-9_.-]+:)?Body[^>]*>\s*<(?:[A-Za-z0-9_.-]+:)?([A-Za-z][A-Za-z0-9_]*)`)

const maxSoapDelay = 10 * time.Minute

var delayLogMu sync.Mutex

func appendDelayLog(controlDir, line string) {
	delayLogMu.Lock()
	defer delayLogMu.Unlock()
	f, err := os.OpenFile(filepath.Join(controlDir, "delayed"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vcsim: soap delay: %v\n", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		fmt.Fprintf(os.Stderr, "vcsim: soap delay: %v\n", err)
	}
}

// soapDelay waits as long as CONTROL/delay-<method> says for the call in `body`, and returns the
// function to call once the call has been answered. A file that does not hold a number of
// milliseconds in 0..600000 is reported on stderr and ignored.
func soapDelay(controlDir string, body []byte) func() {
	none := func() {}
	m := soapBodyCall.FindSubmatch(body)
	if m == nil {
		return none
	}
	method := string(m[1])
	file := filepath.Join(controlDir, "delay-"+method)
	text, err := os.ReadFile(file)
	if err != nil {
		return none
	}
	ms, err := strconv.ParseInt(strings.TrimSpace(string(text)), 10, 64)
	d := time.Duration(ms) * time.Millisecond
	if err != nil || ms < 0 || d > maxSoapDelay {
		fmt.Fprintf(os.Stderr, "vcsim: %s: %q is not a delay in milliseconds (0..%d): ignored\n",
			file, strings.TrimSpace(string(text)), maxSoapDelay.Milliseconds())
		return none
	}
	appendDelayLog(controlDir, "begin "+method)
	time.Sleep(d)
	return func() { appendDelayLog(controlDir, "end "+method) }
}
