package rules

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/common/functions"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
	"github.com/go-json-experiment/json"
)

// activation is what one evaluation's expression sees.
type activation struct {
	ctx     context.Context
	q       Query
	now     time.Time
	vars    []string // the pattern's variables
	vals    []string // and their values in the name
	valsBuf [4]string
	records Records
	values  *Values // q.Values, or own
	own     Values
	lookups int
	looked  map[string]ref.Val
	failed  error // a failed lookup: denies whatever the result
}

// activations are reused: one evaluation would otherwise allocate one.
var activations = sync.Pool{New: func() any { return new(activation) }}

// newActivation returns what ru's expression sees to answer q; release
// gives it back.
func newActivation(ctx context.Context, ru *rule, q *Query, lookup Records) *activation {
	a := activations.Get().(*activation)
	a.ctx, a.q, a.vars, a.records, a.now = ctx, *q, ru.pattern.vars, lookup, q.Now
	a.vals = a.valsBuf[:0]
	a.values = q.Values
	if a.values == nil {
		a.own.reset(q.Data, q.OldData)
		a.values = &a.own
	}
	if ru.expr.usesVars {
		ru.pattern.match(q.Name, &a.vals)
	}
	if a.now.IsZero() && ru.expr.usesNow {
		a.now = time.Now()
	}
	return a
}

// release clears a, keeping its buffers, and puts it back in the pool.
func (a *activation) release() {
	a.ctx, a.q, a.now, a.vars, a.records, a.values = nil, Query{}, time.Time{}, nil, nil, nil
	a.valsBuf = [4]string{}
	a.vals = a.valsBuf[:0]
	a.own.reset(nil, nil)
	a.lookups, a.looked, a.failed = 0, nil, nil
	activations.Put(a)
}

var _ interpreter.FunctionActivation = (*activation)(nil)

var emptyMap = map[string]any{}

// ResolveName returns a variable's value.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varUserID:
		return types.String(a.q.User.ID), true // a CEL value: converted once
	case varUserData:
		return orEmpty(a.q.User.Data), true
	case varUserClaims:
		return orEmpty(a.q.User.Claims), true
	case varName:
		return types.String(a.q.Name), true
	case varNow:
		return types.Timestamp{Time: a.now}, true
	case varData:
		return a.values.dataVal(), true
	case varOldData:
		return a.values.oldDataVal(), true
	case varChanged:
		return a.values.Changed(), true
	}
	if v, ok := strings.CutPrefix(name, varPrefix); ok {
		if i := slices.Index(a.vars, v); i >= 0 && i < len(a.vals) {
			return types.String(a.vals[i]), true
		}
	}
	return nil, false
}

// Parent returns nil: an activation stands alone.
func (a *activation) Parent() interpreter.Activation { return nil }

// ResolveFunction binds record() to this evaluation.
func (a *activation) ResolveFunction(name string) (functions.LateBoundOp, bool) {
	if name == fnRecord {
		return a.record, true
	}
	return nil, false
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return emptyMap
	}
	return m
}

// Values is a change's data and oldData, decoded on first use only (a
// rule that does not read them costs no decoding) and then once for every
// evaluation that shares it: the hub passes one Values in the queries of
// one delivery to many subscribers. It is safe for concurrent use; the
// decoded values are never modified.
type Values struct {
	data, oldData []byte
	dOnce, oOnce  sync.Once
	cOnce         sync.Once
	dv, ov        any
	dVal, oVal    ref.Val // dv and ov as CEL values
	eager         bool    // convert them whole (see NewValues)
	changed       []string
	shared        sharedDecisions
}

// reset makes v the Values of data and oldData, none of them decoded.
func (v *Values) reset(data, oldData []byte) {
	*v = Values{data: data, oldData: oldData}
}

// NewValues returns the Values of data and oldData (nil or empty: null).
//
// Its values are converted to CEL values whole, once: the many queries
// that share it then read them with no conversion (a query alone converts
// only what it reads).
func NewValues(data, oldData []byte) *Values {
	return &Values{data: data, oldData: oldData, eager: true}
}

// Data returns data decoded.
func (v *Values) Data() any {
	v.dOnce.Do(v.decodeData)
	return v.dv
}

// dataVal returns data as a CEL value: an evaluation reading it then
// costs no conversion.
func (v *Values) dataVal() ref.Val {
	v.dOnce.Do(v.decodeData)
	return v.dVal
}

func (v *Values) decodeData() {
	v.dv = decode(v.data)
	v.dVal = v.toVal(v.dv)
}

// oldDataVal returns oldData as a CEL value.
func (v *Values) oldDataVal() ref.Val {
	v.oOnce.Do(v.decodeOldData)
	return v.oVal
}

func (v *Values) decodeOldData() {
	v.ov = decode(v.oldData)
	v.oVal = v.toVal(v.ov)
}

// toVal converts a decoded value to CEL: whole when v is eager, else
// lazily, as it is read.
func (v *Values) toVal(x any) ref.Val {
	if !v.eager {
		return types.DefaultTypeAdapter.NativeToValue(x)
	}
	return celValue(x)
}

// celValue converts a decoded value and everything in it to CEL values.
func celValue(x any) ref.Val {
	switch x := x.(type) {
	case map[string]any:
		m := make(map[ref.Val]ref.Val, len(x))
		for k, e := range x {
			m[types.String(k)] = celValue(e)
		}
		return types.NewRefValMap(types.DefaultTypeAdapter, m)
	case []any:
		l := make([]ref.Val, len(x))
		for i, e := range x {
			l[i] = celValue(e)
		}
		return types.NewRefValList(types.DefaultTypeAdapter, l)
	}
	return types.DefaultTypeAdapter.NativeToValue(x)
}

// OldData returns oldData decoded.
func (v *Values) OldData() any {
	v.oOnce.Do(v.decodeOldData)
	return v.ov
}

// decode turns JSON into what CEL adapts (maps, lists, strings, float64
// numbers, bools), null for nothing, or an error value.
func decode(raw []byte) any {
	if len(raw) == 0 {
		return types.NullValue
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil { // json/v2: 3x faster than encoding/json here
		return types.NewErr("invalid JSON: %v", err)
	}
	if v == nil {
		return types.NullValue
	}
	return v
}

// Changed returns the top-level keys whose values differ between oldData
// and data, sorted. A side that is not an object has no keys.
func (v *Values) Changed() []string {
	v.cOnce.Do(func() {
		oldM, _ := v.OldData().(map[string]any)
		newM, _ := v.Data().(map[string]any)
		v.changed = []string{}
		for k, x := range newM {
			if ox, ok := oldM[k]; !ok || !reflect.DeepEqual(ox, x) {
				v.changed = append(v.changed, k)
			}
		}
		for k := range oldM {
			if _, ok := newM[k]; !ok {
				v.changed = append(v.changed, k)
			}
		}
		slices.Sort(v.changed)
	})
	return v.changed
}

// record serves record(name): that record's data, or null. Lookups of one
// name are made once per evaluation; past MaxLookups names it fails, and
// so does the evaluation.
func (a *activation) record(_ string, args ...ref.Val) ref.Val {
	name, ok := args[0].(types.String)
	if !ok {
		return types.NewErr("record() takes a name")
	}
	if v, ok := a.looked[string(name)]; ok {
		return v
	}
	a.lookups++
	if a.lookups > MaxLookups {
		a.failed = ErrTooManyLookups
		return types.NewErr("%v", ErrTooManyLookups)
	}
	if a.records == nil {
		a.failed = fmt.Errorf("record(%q): no records to look up", string(name))
		return types.NewErr("%v", a.failed)
	}
	raw, found, err := a.records.Record(a.ctx, string(name))
	if err != nil {
		a.failed = fmt.Errorf("record(%q): %w", string(name), err)
		return types.NewErr("%v", a.failed)
	}
	var v ref.Val = types.NullValue
	if found {
		v = types.DefaultTypeAdapter.NativeToValue(decode(raw))
	}
	if a.looked == nil {
		a.looked = make(map[string]ref.Val, MaxLookups)
	}
	a.looked[string(name)] = v
	return v
}
