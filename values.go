package main

import (
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
