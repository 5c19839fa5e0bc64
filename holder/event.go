package holder

import (
	"bufio"
	"encoding/json"
	"io"
	"time"

	"github.com/keepgpu/keepgpu/keeper"
)

// Kind is what an Event reports.
type Kind string

// The kinds of event a holder reports. Those about one GPU come from its
// keeper; holding, released (with no GPU), warning and error may also be
// about the holder as a whole.
const (
	Held         Kind = "held"          // one GPU holds its VRAM
	Holding      Kind = "holding"       // every GPU holds: GPUs says what
	Paused       Kind = "paused"        // a GPU's kernel paused (Reason)
	Resumed      Kind = "resumed"       // a GPU's kernel runs again
	Telemetry    Kind = "telemetry"     // a GPU's telemetry changed: "ok" or why it is unknown
	KernelFailed Kind = "kernel-failed" // a GPU's kernel stopped for good; its VRAM stays held
	TreeUse      Kind = "tree-use"      // the wrapped command uses a held GPU: the holder releases
	Released     Kind = "released"      // VRAM handed back; Reason says why
	Warning      Kind = "warning"       // something the user should know; holding goes on
	Error        Kind = "error"         // the holder cannot hold (or release) and exits 1
)

// Event is one line of a holder's event stream: a JSON object with the
// kind in "event" and a line a person can read in "message". GPU is the
// CUDA ordinal of the GPU it is about, or -1 for the holder as a whole
// (then "gpu" is left out of the JSON).
type Event struct {
	Time    time.Time
	Kind    Kind
	GPU     int
	UUID    string
	Name    string
	Bytes   uint64 // VRAM held on GPU
	Reason  string
	Message string
	// Holding reports every held GPU.
	GPUs []keeper.Status
	// Released of the holder as a whole: how long it held, and how long
	// the release took.
	HeldSeconds float64
	ReleaseMS   float64
}

// wireEvent is Event as JSON, in the order of its fields.
type wireEvent struct {
	Time        time.Time       `json:"time"`
	Kind        Kind            `json:"event"`
	GPU         *int            `json:"gpu,omitempty"`
	UUID        string          `json:"uuid,omitempty"`
	Name        string          `json:"name,omitempty"`
	Bytes       uint64          `json:"bytes,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Message     string          `json:"message"`
	GPUs        []keeper.Status `json:"gpus,omitempty"`
	HeldSeconds float64         `json:"held_s,omitempty"`
	ReleaseMS   float64         `json:"release_ms,omitempty"`
}

// MarshalJSON encodes e as one line of the event stream.
func (e Event) MarshalJSON() ([]byte, error) {
	w := wireEvent{Time: e.Time, Kind: e.Kind, UUID: e.UUID, Name: e.Name, Bytes: e.Bytes,
		Reason: e.Reason, Message: e.Message, GPUs: e.GPUs, HeldSeconds: e.HeldSeconds, ReleaseMS: e.ReleaseMS}
	if e.GPU >= 0 {
		w.GPU = &e.GPU
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes one line of the event stream; an event without
// "gpu" is about the holder as a whole (GPU -1).
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = Event{Time: w.Time, Kind: w.Kind, GPU: -1, UUID: w.UUID, Name: w.Name, Bytes: w.Bytes,
		Reason: w.Reason, Message: w.Message, GPUs: w.GPUs, HeldSeconds: w.HeldSeconds, ReleaseMS: w.ReleaseMS}
	if w.GPU != nil {
		e.GPU = *w.GPU
	}
	return nil
}

// Text is what the event says: its message, or its reason when it has no
// message.
func (e Event) Text() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Reason
}

// encode writes e as one line.
func encode(w io.Writer, e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// decode sends every event read from r on events until r ends, then closes
// events. Lines that are not events are skipped.
func decode(r io.Reader, events chan<- Event) {
	defer close(events)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Kind != "" {
			events <- e
		}
	}
}

// fromKeeper is a keeper's event as the holder reports it; message words
// it for people.
func fromKeeper(e keeper.Event, message string) Event {
	return Event{Time: e.Time, Kind: Kind(e.Kind), GPU: e.GPU, UUID: e.UUID, Name: e.Name,
		Bytes: e.Bytes, Reason: e.Reason, Message: message}
}
