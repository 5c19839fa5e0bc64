package signals

import (
	"errors"
	"fmt"
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
