package demo

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// TestDriversStayOnStreets moves every driver a long way, in steps of
// every size, and checks that each position written is on a street of the
// map, inside it, with a heading along the street.
func TestDriversStayOnStreets(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for i, name := range driverNames {
		d := newDriver(i, name, rnd)
		for step := range 2000 {
			d.step(float64(step%97)+0.5, rnd)
			var v struct {
				Name          string
				X, Y, Heading float64
			}
			if err := json.Unmarshal(d.value(), &v); err != nil {
				t.Fatal(err)
			}
			onX, onY := slices.Contains(streetX, v.X), slices.Contains(streetY, v.Y)
			if v.Name != name || !onX && !onY || v.X < streetX[0] || v.X > streetX[3] || v.Y < streetY[0] || v.Y > streetY[3] {
				t.Fatalf("%s after step %d: %s, off the streets", d.record, step, d.value())
			}
			if h := math.Mod(v.Heading+360, 180); !onY && h != 90 || !onX && h != 0 {
				t.Fatalf("%s after step %d: %s, heading across its street", d.record, step, d.value())
			}
		}
	}
}

// TestSnap: a driver resumed from a record goes on from the nearest crossing.
func TestSnap(t *testing.T) {
	d := newDriver(0, "Ada", rand.New(rand.NewPCG(1, 2)))
	d.snap(395, 190, rand.New(rand.NewPCG(3, 4)))
	if d.from != (node{2, 1}) || d.at != 0 || !slices.Contains(d.from.neighbors(), d.to) {
		t.Errorf("snap to (395, 190): from %v to %v at %v, want from the crossing (390, 200) to a neighbor", d.from, d.to, d.at)
	}
}

// TestResumeAt: a driver told active again goes on from mid-block when
// its record is where it left it, and from the nearest crossing when
// someone else moved it.
func TestResumeAt(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	d := newDriver(0, "Ada", rnd)
	d.step(40, rnd) // mid-block: blocks are 130 or 160 long
	from, to, at := d.from, d.to, d.at
	var v struct{ X, Y float64 }
	json.Unmarshal(d.value(), &v)
	d.resumeAt(v.X, v.Y, rnd)
	if d.from != from || d.to != to || d.at != at {
		t.Errorf("resumeAt its own position: from %v to %v at %v, want %v %v %v", d.from, d.to, d.at, from, to, at)
	}
	d.resumeAt(545, 455, rnd)
	if d.from != (node{3, 3}) || d.at != 0 {
		t.Errorf("resumeAt (545, 455): from %v at %v, want the crossing (550, 460)", d.from, d.at)
	}
}

func TestAddTwo(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":2,"b":3}`:     `5`,
		`{"a":-1.5,"b":1}`:  `-0.5`,
		`{"a":2}`:           "",
		`{"a":"2","b":3}`:   "",
		`[2,3]`:             "",
		`null`:              "",
		`{"a":1e308,"b":0}`: `1e+308`,
	} {
		got := addTwo(json.RawMessage(in))
		switch {
		case want == "" && (got.Error == "" || got.Data != nil):
			t.Errorf("addTwo(%s) = %+v, want an error", in, got)
		case want != "" && string(got.Data) != want:
			t.Errorf("addTwo(%s) = %+v, want %s", in, got, want)
		}
	}
}

func TestLogin(t *testing.T) {
	for in, want := range map[string]string{
		`{"name":"Ada"}`:                       "guest-ada",
		`{"name":"  Ada  Lovelace "}`:          "guest-ada-lovelace",
		`{"name":"Chiara_2.0"}`:                "guest-chiara_2.0",
		`{"name":"Zoë"}`:                       "guest-zoë",
		`{"name":""}`:                          "",
		`{"name":"<script>"}`:                  "",
		`{"name":"a/b"}`:                       "",
		`{"name":"abcdefghijklmnopqrstuvwxy"}`: "",
		`{}`:                                   "",
		`"Ada"`:                                "",
	} {
		id, data, err := Login(json.RawMessage(in))
		if want == "" {
			if !api.IsCode(err, api.CodeInvalidParameter) {
				t.Errorf("Login(%s) = %q, %v; want INVALID_PARAMETER", in, id, err)
			}
			continue
		}
		if err != nil || id != want || !json.Valid(data) {
			t.Errorf("Login(%s) = %q, %s, %v; want %q", in, id, data, err, want)
		}
	}
}

// denyAll refuses everything.
type denyAll struct{}

func (denyAll) Allow(context.Context, realtime.Request) error {
	return api.Errorf(api.CodePermissionDenied, "no")
}
func (denyAll) DependsOnData(realtime.Section, realtime.Action, string) bool { return false }

// TestTrust: the provider's user passes every check; nobody else does,
// whatever their claims say.
func TestTrust(t *testing.T) {
	if _, same := Trust(realtime.AllowAll{}).(realtime.AllowAll); !same {
		t.Error("Trust(AllowAll) is not AllowAll: the record service loses its fast path")
	}
	access := Trust(denyAll{})
	ctx := context.Background()
	if err := access.Allow(ctx, realtime.Request{User: self, Action: realtime.ActListen, Name: "driver/1"}); err != nil {
		t.Errorf("the provider's user: %v", err)
	}
	var claims map[string]any
	json.Unmarshal([]byte(`{"switchboard.demo": 1, "sub": ""}`), &claims)
	for _, u := range []api.User{{}, {ID: "guest-ada"}, {Claims: claims}, {Claims: map[string]any{markClaim: new(byte)}}} {
		if err := access.Allow(ctx, realtime.Request{User: u, Action: realtime.ActWrite, Name: "driver/1"}); err == nil {
			t.Errorf("user %+v was allowed", u)
		}
	}
}
