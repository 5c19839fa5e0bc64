package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/keepgpu/keepgpu/service"
	"github.com/keepgpu/keepgpu/signals"
)

// The types of flags whose values the packages check, so that a value is
// refused when it is read, from a flag or from its KEEPGPU_* variable, with
// the flag or the variable named.

// pathFlag is a ready file's or FIFO's path; see signals.CheckPath.
type pathFlag string

func (p *pathFlag) UnmarshalText(b []byte) error {
	if err := signals.CheckPath(string(b)); err != nil {
		return err
	}
	*p = pathFlag(b)
	return nil
}

// markerFlag is a --ready-marker text; see signals.CheckMarker.
type markerFlag string

func (m *markerFlag) UnmarshalText(b []byte) error {
	if err := signals.CheckMarker(string(b)); err != nil {
		return err
	}
	*m = markerFlag(b)
	return nil
}

// signalFlag is a --ready-signal; see signals.ParseReadySignal. 0 is none.
type signalFlag syscall.Signal

func (s *signalFlag) UnmarshalText(b []byte) error {
	sig, err := signals.ParseReadySignal(string(b))
	if err != nil {
		return err
	}
	*s = signalFlag(sig)
	return nil
}

// jobIDFlag is a session's job id; see service.CheckJobID.
type jobIDFlag string

func (j *jobIDFlag) UnmarshalText(b []byte) error {
	if err := service.CheckJobID(string(b)); err != nil {
		return err
	}
	*j = jobIDFlag(b)
	return nil
}

// listenFlag is a --listen HOST:PORT; see service.ParseListen. Empty is
// refused: it would silently mean the default address.
type listenFlag string

func (l *listenFlag) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty; want HOST:PORT, such as 127.0.0.1:8765")
	}
	*l = listenFlag(b)
	return nil
}

// thresholdFlag is KeepGPU's deprecated --threshold: an integer busy
// threshold or a size, read by KeepFlags.spec. Empty is refused.
type thresholdFlag string

func (t *thresholdFlag) UnmarshalText(b []byte) error {
	if len(strings.TrimSpace(string(b))) == 0 {
		return errors.New("empty; want an integer busy threshold or a size")
	}
	*t = thresholdFlag(b)
	return nil
}

// logFormat is --log-format: text or json. It is checked as it is read
// (not with kong's enum, which would not name a bad KEEPGPU_LOG_FORMAT).
type logFormat string

func (l *logFormat) UnmarshalText(b []byte) error {
	switch s := string(b); s {
	case "text", "json":
		*l = logFormat(s)
		return nil
	}
	return fmt.Errorf("%q: want text or json", b)
}
