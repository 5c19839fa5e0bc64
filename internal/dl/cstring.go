package dl

import (
	"bytes"
	"unsafe"
)

// CString is the string in b up to its first NUL (all of b if none): a
// fixed-size char buffer a library filled.
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// GoString copies the NUL-terminated C string at p ("" for nil): a string
// a library returned a pointer to.
func GoString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
