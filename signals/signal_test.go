package signals

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

func kill(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
}

func TestSignalFires(t *testing.T) {
	for _, early := range []bool{false, true} {
		s := Signal(syscall.SIGUSR2)
		var done <-chan error
		if early { // caught before anyone waits
			kill(t, syscall.SIGUSR2)
			done = waitAsync(guardCtx(t), s)
		} else {
			done = waitAsync(guardCtx(t), s)
			kill(t, syscall.SIGUSR2)
		}
		if err := recv(t, done); err != nil {
			t.Fatalf("early=%v: Wait = %v, want nil", early, err)
		}
		if err := s.Wait(context.Background()); err != nil {
			t.Fatalf("early=%v: second Wait = %v, want nil", early, err)
		}
		s.Close()
	}
}

func TestSignalClose(t *testing.T) {
	// other keeps SIGUSR2 caught, so that sending it after closed's Close
	// cannot kill the test.
	other := Signal(syscall.SIGUSR2)
	defer other.Close()
	closed := Signal(syscall.SIGUSR2)

	ctx, cancel := context.WithCancel(context.Background())
	done := waitAsync(ctx, closed)
	cancel()
	if err := recv(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v, want %v", err, context.Canceled)
	}
	done = waitAsync(guardCtx(t), closed)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := recv(t, done); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v, want %v", err, ErrClosed)
	}

	kill(t, syscall.SIGUSR2)
	if err := other.Wait(guardCtx(t)); err != nil {
		t.Fatalf("other Wait = %v, want nil", err)
	}
	// os/signal delivers to all channels under one lock that Stop also
	// takes: once this returns, delivery of the signal is complete.
	signal.Stop(make(chan os.Signal))
	if len(closed.ch) != 0 {
		t.Fatal("signal delivered to a closed SignalSource")
	}
}

// TestName names signals as keepgpu's messages do.
func TestName(t *testing.T) {
	tests := []struct {
		sig  os.Signal
		want string
	}{
		{syscall.SIGTERM, "SIGTERM"},
		{syscall.SIGUSR2, "SIGUSR2"},
		{os.Interrupt, "SIGINT"},
		{syscall.Signal(40), "signal 40"},
	}
	for _, tt := range tests {
		if got := Name(tt.sig); got != tt.want {
			t.Errorf("Name(%d) = %q; want %q", tt.sig, got, tt.want)
		}
	}
}
