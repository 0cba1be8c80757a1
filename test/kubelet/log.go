package kubelet

import (
	"io"
	"log"
)

// discardLogger hides the http.Server's per-handshake errors; the failure a
// test cares about is what the client sees.
func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
