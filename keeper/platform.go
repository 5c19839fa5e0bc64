package keeper

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keepgpu/keepgpu/amdsmi"
	"github.com/keepgpu/keepgpu/cuda"
	"github.com/keepgpu/keepgpu/hip"
	"github.com/keepgpu/keepgpu/nvml"
	"github.com/keepgpu/keepgpu/rocmsmi"
)

// Platform says whose GPUs keepgpu holds: NVIDIA's through CUDA, AMD's
// through ROCm's HIP runtime, or (auto) whichever vendor's this process
// sees, CUDA's first, as KeepGPU checks them.
type Platform string

// The platforms; "" reads as PlatformAuto.
const (
	PlatformAuto Platform = "auto"
	PlatformCUDA Platform = "cuda"
	PlatformROCm Platform = "rocm"
)

// ParsePlatform reads auto, cuda or rocm, in any case.
func ParsePlatform(s string) (Platform, error) {
	switch p := Platform(strings.ToLower(strings.TrimSpace(s))); p {
	case PlatformAuto, PlatformCUDA, PlatformROCm:
		return p, nil
	case "":
		return "", errors.New(`platform "": empty; want auto, cuda or rocm`)
	case "cpu", "macm", "mps":
		return "", fmt.Errorf("platform %q: keepgpu holds NVIDIA (cuda) and AMD (rocm) GPUs; want auto, cuda or rocm", s)
	}
	return "", fmt.Errorf("platform %q: want auto, cuda (NVIDIA) or rocm (AMD)", s)
}

// UnmarshalText parses a --platform value; see ParsePlatform.
func (p *Platform) UnmarshalText(b []byte) error {
	v, err := ParsePlatform(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// String returns the platform's name; the zero value is "auto".
func (p Platform) String() string {
	if p == "" {
		return string(PlatformAuto)
	}
	return string(p)
}

// MarshalText writes the platform's name.
func (p Platform) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Driver is one vendor's GPU runtime, loaded and initialised: the GPUs it
// shows this process, in ordinal order (the numbers --gpus takes), and how
// to open each and read their telemetry.
type Driver struct {
	Platform Platform // cuda or rocm
	// GPUs are the visible GPUs. On ROCm a GPU's UUID is
	// hip.DeviceInfo.ID: its UUID, or its PCI bus id without one.
	GPUs []cuda.DeviceInfo

	cuda    *cuda.Driver
	hip     *hip.Runtime
	hipDevs []hip.DeviceInfo

	telemetryName string // set by OpenTelemetry on ROCm
}

// LoadDriver loads the runtime of platform p and lists the GPUs it shows
// this process: libcuda for cuda, the HIP runtime for rocm; auto takes
// CUDA's when it shows a GPU, else HIP's. A runtime that shows no GPU is
// an error (wrapping cuda.ErrorNoDevice or hip.ErrorNoDevice where the
// runtime says so). With auto and neither, the error is that of the
// vendor whose library is on the node, or both where both are (or
// neither is).
func LoadDriver(p Platform) (*Driver, error) {
	switch p {
	case PlatformCUDA:
		return loadCUDA()
	case PlatformROCm:
		return loadROCm()
	}
	d, cerr := loadCUDA()
	if cerr == nil {
		return d, nil
	}
	d, rerr := loadROCm()
	if rerr == nil {
		return d, nil
	}
	cudaThere := !errors.Is(cerr, cuda.ErrNoLibrary)
	rocmThere := !errors.Is(rerr, hip.ErrNoLibrary)
	switch {
	case cudaThere && !rocmThere:
		return nil, cerr
	case rocmThere && !cudaThere:
		return nil, rerr
	}
	return nil, fmt.Errorf("%w; and ROCm: %w", cerr, rerr)
}

func loadCUDA() (*Driver, error) {
	c, err := cuda.Load()
	if err != nil {
		return nil, err
	}
	devs, err := c.Devices()
	if err != nil {
		return nil, err
	}
	if len(devs) == 0 {
		return nil, errors.New("the driver shows no GPU to this process")
	}
	return &Driver{Platform: PlatformCUDA, GPUs: devs, cuda: c}, nil
}

func loadROCm() (*Driver, error) {
	r, err := hip.Load()
	if errors.Is(err, hip.ErrNoLibrary) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("no AMD GPU: %w", err)
	}
	devs, err := r.Devices()
	if err != nil {
		return nil, fmt.Errorf("no AMD GPU: %w", err)
	}
	if len(devs) == 0 {
		return nil, errors.New("no AMD GPU: the HIP runtime shows no GPU to this process")
	}
	d := &Driver{Platform: PlatformROCm, hip: r, hipDevs: devs}
	for _, h := range devs {
		d.GPUs = append(d.GPUs, cuda.DeviceInfo{Ordinal: h.Ordinal, UUID: h.ID(), Name: h.Name, TotalBytes: h.TotalBytes})
	}
	return d, nil
}

// Open creates a context on the GPU info names (one of d.GPUs).
func (d *Driver) Open(info cuda.DeviceInfo) (Device, error) {
	if d.hip != nil {
		c, err := d.hip.NewContext(info.Ordinal)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	c, err := d.cuda.NewContext(info.Ordinal)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// visibleVars names the variables the platform's ordinals follow.
func (d *Driver) visibleVars() string {
	if d.Platform == PlatformROCm {
		return "ROCR_VISIBLE_DEVICES and HIP_VISIBLE_DEVICES"
	}
	return "CUDA_VISIBLE_DEVICES"
}

// TelemetryCloser is a Telemetry that is shut down after use.
type TelemetryCloser interface {
	Telemetry
	Close() error
}

// TelemetryName is the management library telemetry is read through:
// NVML; on ROCm, after OpenTelemetry, the one it opened ("AMD SMI" or
// "ROCm SMI"), or the ones it tried.
func (d *Driver) TelemetryName() string {
	if d.Platform != PlatformROCm {
		return "NVML"
	}
	if d.telemetryName == "" {
		return "AMD SMI or ROCm SMI"
	}
	return d.telemetryName
}

// OpenTelemetry opens the platform's management library to read d.GPUs by
// their UUID; Sample's Index is that library's numbering of the GPU. On
// NVIDIA it is NVML. On ROCm it is AMD SMI (ROCm 6 and later), or ROCm SMI
// where libamd_smi is missing or fails to initialise, or is a version
// whose struct layouts keepgpu has not checked; with no ROCm SMI either,
// such an AMD SMI still reads memory and says the rest is unknown.
func (d *Driver) OpenTelemetry() (TelemetryCloser, error) {
	if d.Platform == PlatformROCm {
		return d.openAMDTelemetry()
	}
	nv, err := nvml.Open()
	if err != nil {
		return nil, err
	}
	return nv, nil
}

func (d *Driver) openAMDTelemetry() (TelemetryCloser, error) {
	a, aerr := amdsmi.Open()
	if aerr == nil && a.Version.Known() {
		d.telemetryName = "AMD SMI"
		return amdTelemetry{a.Telemetry(d.hipDevs), a}, nil
	}
	r, rerr := rocmsmi.Open()
	if rerr == nil {
		if a != nil {
			a.Close()
		}
		d.telemetryName = "ROCm SMI"
		return smiTelemetry{r.Telemetry(d.hipDevs), r}, nil
	}
	if aerr == nil {
		d.telemetryName = "AMD SMI"
		return amdTelemetry{a.Telemetry(d.hipDevs), a}, nil
	}
	if errors.Is(aerr, amdsmi.ErrNoLibrary) {
		d.telemetryName = "ROCm SMI"
		return nil, rerr
	}
	d.telemetryName = "AMD SMI and ROCm SMI"
	return nil, fmt.Errorf("%w; and %w", aerr, rerr)
}

// HIP's contexts, and AMD SMI's or ROCm SMI's telemetry, are what keeper
// holds and reads AMD GPUs with.
var (
	_ Device    = (*hip.Context)(nil)
	_ Telemetry = (*amdsmi.Telemetry)(nil)
	_ Telemetry = (*rocmsmi.Telemetry)(nil)
)

// amdTelemetry closes the AMD SMI its telemetry reads.
type amdTelemetry struct {
	*amdsmi.Telemetry
	smi *amdsmi.SMI
}

func (t amdTelemetry) Close() error { return t.smi.Close() }

// smiTelemetry closes the ROCm SMI its telemetry reads.
type smiTelemetry struct {
	*rocmsmi.Telemetry
	smi *rocmsmi.SMI
}

func (t smiTelemetry) Close() error { return t.smi.Close() }
