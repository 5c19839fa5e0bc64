package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// duplicateMember returns an error naming the first member that appears
// twice in one object anywhere in raw, which must be valid JSON. Go's
// decoder keeps the last of them silently; the API refuses them instead,
// so that what a request says cannot depend on which reader reads it.
func duplicateMember(raw []byte) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	err := walkValue(d)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// walkValue reads one value from d, checking every object within it.
func walkValue(d *json.Decoder) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			if seen[key] {
				return fmt.Errorf("duplicate member %s", strconv.Quote(key))
			}
			seen[key] = true
			if err := walkValue(d); err != nil {
				return err
			}
		}
		_, err = d.Token() // '}'
		return err
	case json.Delim('['):
		for d.More() {
			if err := walkValue(d); err != nil {
				return err
			}
		}
		_, err = d.Token() // ']'
		return err
	}
	return nil
}
