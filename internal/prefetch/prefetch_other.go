//go:build !amd64 && !arm64

package prefetch

import "unsafe"

// Line does nothing on this architecture (see the amd64 and arm64 versions).
func Line(p unsafe.Pointer) {}
