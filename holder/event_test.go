package holder

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keepgpu/keepgpu/keeper"
)

// TestEventJSON encodes events as the stream carries them: the fields in
// a fixed order, "gpu" only for an event about one GPU, and decodes them
// back to the same event.
func TestEventJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{
			name: "held gpu 0",
			e:    Event{Time: at, Kind: Held, GPU: 0, UUID: "GPU-a", Name: "Fake", Bytes: 1 << 30, Message: "gpu 0: holding"},
			want: `{"time":"2026-01-02T03:04:05Z","event":"held","gpu":0,"uuid":"GPU-a","name":"Fake","bytes":1073741824,"message":"gpu 0: holding"}`,
		},
		{
			name: "holding",
			e: Event{Time: at, Kind: Holding, GPU: -1, Message: "holding 1 GPU",
				GPUs: []keeper.Status{{GPU: 0, UUID: "GPU-a", Name: "Fake", Bytes: 1 << 30, Kernel: keeper.KernelRunning, Telemetry: "ok"}}},
			want: `{"time":"2026-01-02T03:04:05Z","event":"holding","message":"holding 1 GPU","gpus":[{"gpu":0,"uuid":"GPU-a","name":"Fake","bytes":1073741824,"kernel":"running","telemetry":"ok","utilization":null}]}`,
		},
		{
			name: "released",
			e:    Event{Time: at, Kind: Released, GPU: -1, Reason: "SIGTERM", Message: "released 1 GPU", HeldSeconds: 1.5, ReleaseMS: 0.25},
			want: `{"time":"2026-01-02T03:04:05Z","event":"released","reason":"SIGTERM","message":"released 1 GPU","held_s":1.5,"release_ms":0.25}`,
		},
		{
			name: "error",
			e:    Event{Time: at, Kind: Error, GPU: -1, Message: "holding nothing: no driver"},
			want: `{"time":"2026-01-02T03:04:05Z","event":"error","message":"holding nothing: no driver"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := encode(&b, tt.e); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want+"\n" {
				t.Fatalf("encode:\n got %s\nwant %s", got, tt.want)
			}
			var back Event
			if err := json.Unmarshal(b.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tt.e) {
				t.Fatalf("decoded %+v\nwant    %+v", back, tt.e)
			}
		})
	}
}

// TestDecode reads a stream: events in order, lines that are not events
// skipped, a long line whole, and the channel closed at the end.
func TestDecode(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	in := strings.Join([]string{
		`{"event":"held","gpu":0,"uuid":"GPU-a","bytes":1024}`,
		`not json`,
		`{"no":"event"}`,
		`{"event":"warning","reason":"` + long + `"}`,
		`{"event":"paused","gpu":1,"reason":"foreign compute process 42"}`,
		`{"event":"released","reason":"SIGTERM"}`,
	}, "\n")
	events := make(chan Event, 16)
	decode(strings.NewReader(in), events)
	var got []Event
	for e := range events {
		got = append(got, e)
	}
	want := []Event{
		{Kind: Held, GPU: 0, UUID: "GPU-a", Bytes: 1024},
		{Kind: Warning, GPU: -1, Reason: long},
		{Kind: Paused, GPU: 1, Reason: "foreign compute process 42"},
		{Kind: Released, GPU: -1, Reason: "SIGTERM"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v\nwant %+v", got, want)
	}
}

// TestEventText prefers the message to the reason.
func TestEventText(t *testing.T) {
	tests := []struct {
		e    Event
		want string
	}{
		{Event{Message: "m", Reason: "r"}, "m"},
		{Event{Reason: "r"}, "r"},
		{Event{}, ""},
	}
	for _, tt := range tests {
		if got := tt.e.Text(); got != tt.want {
			t.Errorf("%+v.Text() = %q; want %q", tt.e, got, tt.want)
		}
	}
}
