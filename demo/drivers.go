package demo

import (
	"cmp"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/realtime"
)

// The map, in the page's SVG coordinates (demo.html draws the same
// streets): a grid of streets whose crossings the drivers move between.
var (
	streetX = []float64{70, 230, 390, 550}
	streetY = []float64{70, 200, 330, 460}
)

// driverNames name the drivers, whose records are driver/1 to driver/N.
var driverNames = []string{"Ada", "Bruno", "Chiara", "Dario", "Elena", "Fabio"}

// speed is how far a driver goes per second, in map units.
const speed = 120

// node is a crossing: the indexes of its streets in streetX and streetY.
type node struct{ col, row int }

func (n node) xy() (float64, float64) { return streetX[n.col], streetY[n.row] }

// neighbors are the crossings one block away.
func (n node) neighbors() []node {
	var out []node
	for _, d := range []node{{1, 0}, {-1, 0}, {0, 1}, {0, -1}} {
		m := node{n.col + d.col, n.row + d.row}
		if m.col >= 0 && m.col < len(streetX) && m.row >= 0 && m.row < len(streetY) {
			out = append(out, m)
		}
	}
	return out
}

// driver is one driver: its record, and where it is on the way from one
// crossing to the next. Its position is the mover's own; active and fresh
// are under Provider.mu.
type driver struct {
	record, name string
	from, to     node
	at           float64 // how far from `from` towards `to`
	heading      float64 // degrees, 0 east, 90 south (SVG's y goes down)

	active bool // its record has a watcher
	fresh  bool // active since the mover last looked: read where it is
}

func newDriver(i int, name string, rnd *rand.Rand) *driver {
	d := &driver{record: "driver/" + strconv.Itoa(i+1), name: name}
	d.from = node{rnd.IntN(len(streetX)), rnd.IntN(len(streetY))}
	d.turn(rnd, node{-1, -1})
	return d
}

// turn picks the next crossing from d.from, not back to prev unless it is
// a dead end.
func (d *driver) turn(rnd *rand.Rand, prev node) {
	next := slices.DeleteFunc(d.from.neighbors(), func(n node) bool { return n == prev })
	if len(next) == 0 {
		next = []node{prev}
	}
	d.to, d.at = next[rnd.IntN(len(next))], 0
	fx, fy := d.from.xy()
	tx, ty := d.to.xy()
	d.heading = math.Atan2(ty-fy, tx-fx) * 180 / math.Pi
}

// step moves d dist further along the streets.
func (d *driver) step(dist float64, rnd *rand.Rand) {
	for dist > 0 {
		fx, fy := d.from.xy()
		tx, ty := d.to.xy()
		left := math.Hypot(tx-fx, ty-fy) - d.at
		if dist < left {
			d.at += dist
			return
		}
		dist -= left
		prev := d.from
		d.from = d.to
		d.turn(rnd, prev)
	}
}

// snap puts d at the crossing nearest to (x, y), heading for a next one.
func (d *driver) snap(x, y float64, rnd *rand.Rand) {
	best := math.Inf(1)
	for c := range streetX {
		for r := range streetY {
			n := node{c, r}
			nx, ny := n.xy()
			if dd := math.Hypot(nx-x, ny-y); dd < best {
				best, d.from = dd, n
			}
		}
	}
	d.turn(rnd, node{-1, -1})
}

// value is d's record: {name, x, y, heading}.
func (d *driver) value() json.RawMessage {
	fx, fy := d.from.xy()
	tx, ty := d.to.xy()
	f := d.at / math.Hypot(tx-fx, ty-fy)
	round := func(v float64) float64 { return math.Round(v*10) / 10 }
	b, _ := json.Marshal(struct {
		Name    string  `json:"name"`
		X       float64 `json:"x"`
		Y       float64 `json:"y"`
		Heading float64 `json:"heading"`
	}{d.name, round(fx + (tx-fx)*f), round(fy + (ty-fy)*f), math.Round(d.heading)})
	return b
}

// move writes the drivers' records: once at start for those that do not
// exist, then, every tick, the next position of each driver that has a
// watcher, in one batch. With no driver watched it writes nothing and
// waits.
func (p *Provider) move(ctx context.Context) {
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	p.place(ctx)
	tick := time.NewTicker(p.tick)
	defer tick.Stop()
	for {
		active, fresh := p.watched()
		if len(active) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, d := range fresh {
			p.resume(ctx, d, rnd)
		}
		ops := make([]realtime.Op, len(active))
		for i, d := range active {
			d.step(speed*p.tick.Seconds(), rnd)
			ops[i] = realtime.Op{Op: "put", Name: d.record, Data: d.value()}
		}
		if _, err := p.s.Records.Write(ctx, self, ops); err != nil && ctx.Err() == nil {
			p.s.Log.Warn("demo: move the drivers", "err", err)
		}
	}
}

// watched returns the active drivers, in record order, and those of them
// that became active since it was last called.
func (p *Provider) watched() (active, fresh []*driver) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.drivers {
		if d.active {
			active = append(active, d)
		}
		if d.active && d.fresh {
			d.fresh = false
			fresh = append(fresh, d)
		}
	}
	slices.SortFunc(active, func(a, b *driver) int { // driver/2 before driver/10
		return cmp.Or(cmp.Compare(len(a.record), len(b.record)), strings.Compare(a.record, b.record))
	})
	return active, fresh
}

// place creates the drivers' records that do not exist yet, where the
// drivers are now: a page shows them before anyone watched.
func (p *Provider) place(ctx context.Context) {
	for _, d := range p.drivers {
		op := realtime.Op{Op: "put", Name: d.record, Data: d.value(), Cond: api.Cond{IfNoneMatch: true}}
		_, err := p.s.Records.Write(ctx, self, []realtime.Op{op})
		if err != nil && !api.IsCode(err, api.CodeVersionConflict) && ctx.Err() == nil {
			p.s.Log.Warn("demo: place a driver", "record", d.record, "err", err)
		}
	}
}

// resume carries on from where d's record says it is: another instance
// (or this one before a restart) may have moved it last.
func (p *Provider) resume(ctx context.Context, d *driver, rnd *rand.Rand) {
	rec, err := p.s.Records.Get(ctx, self, d.record)
	if err != nil {
		return
	}
	var at struct{ X, Y *float64 }
	if json.Unmarshal(rec.Data, &at) == nil && at.X != nil && at.Y != nil {
		d.resumeAt(*at.X, *at.Y, rnd)
	}
}

// resumeAt goes on from (x, y): from where d is if that is where it was
// left (mid-block, with no jump), else from the crossing nearest to it.
func (d *driver) resumeAt(x, y float64, rnd *rand.Rand) {
	var mine struct{ X, Y float64 }
	json.Unmarshal(d.value(), &mine)
	if math.Abs(x-mine.X) < 0.5 && math.Abs(y-mine.Y) < 0.5 {
		return
	}
	d.snap(x, y, rnd)
}
