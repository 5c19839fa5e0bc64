package signals

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// CheckPath checks a path given for a ready file or FIFO: it must not be
// empty (an unset variable in a script must not silently turn the source
// off) nor contain a newline, which no one means in a path.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.ContainsAny(p, "\n\x00"):
		return fmt.Errorf("path %q: contains a newline or NUL", p)
	}
	return nil
}

// kindOf names the kind of file mode m is, for messages.
func kindOf(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeSocket:
		return "a socket"
	case fs.ModeDevice:
		return "a block device"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "a character device"
	case fs.ModeNamedPipe:
		return "a FIFO"
	}
	return "a file of type " + m.Type().String()
}

// CheckMarker checks a --ready-marker text as [Marker] takes it: not
// empty, no newline.
func CheckMarker(text string) error {
	switch {
	case text == "":
		return errors.New("empty text")
	case strings.Contains(text, "\n"):
		return fmt.Errorf("text %q: contains a newline, so no line could contain it", text)
	}
	return nil
}
