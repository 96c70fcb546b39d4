package rules

import (
	"math"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
)

// CEL's runtime cost tracker costs more than a typical rule's evaluation.
// It can only stop an evaluation whose cost exceeds the limit, and CEL's
// checker bounds that cost from above given the sizes of the inputs: an
// expression whose worst case, for inputs up to some size, stays within
// the limit runs without the tracker on inputs up to that size, and with it
// otherwise. Who sees the difference? Nobody: an evaluation the tracker
// could not have stopped gives the same answer without it.

// unbounded is the size bound of an expression whose worst case stays
// within the limit whatever its inputs.
const unbounded = math.MaxUint64

// maxSizeBound is the largest input size worth a fast program: beyond it,
// data is large enough for the tracker's share not to matter.
const maxSizeBound = 1 << 30

// sizeBound returns the largest input size (see inputSize) up to which
// ast's worst-case cost stays within limit: unbounded, or 0 when none
// does (the expression always runs with the tracker).
func sizeBound(env *cel.Env, ast *cel.Ast, limit uint64) uint64 {
	within := func(size uint64) bool {
		est, err := env.EstimateCost(ast, sizeEstimator{size})
		return err == nil && est.Max <= limit
	}
	if within(unbounded) {
		return unbounded
	}
	// The estimate grows with the size: the largest power of two within.
	lo, hi := -1, 30 // within(1<<lo) holds (lo = -1: none known), within(1<<hi) fails or is the cap
	if within(maxSizeBound) {
		return maxSizeBound
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if within(1 << mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	if lo < 0 {
		return 0
	}
	return 1 << lo
}

// sizeEstimator bounds the size (characters of a string, items of a list
// or a map) of every value read from data, oldData, changed, name, the
// pattern's variables and user.id by size; user.data and user.claims are
// left unbounded (nothing cheap bounds them per evaluation), and so is what
// record() returns (an expression that calls it always runs tracked).
type sizeEstimator struct{ size uint64 }

func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

func (e sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	path := n.Path()
	if e.size == unbounded || len(path) == 0 {
		return nil
	}
	switch root := path[0]; {
	case root == varUserData, root == varUserClaims, root == varNow:
		return nil
	case root == varUserID, root == varData, root == varOldData, root == varChanged, root == varName,
		strings.HasPrefix(root, varPrefix):
		return &cost.SizeEstimate{Min: 0, Max: e.size}
	}
	return nil
}

// inputSize bounds the size of every value sizeEstimator bounds: a string
// or a list decoded from JSON is no longer than the JSON, changed has no
// more keys than data and oldData have bytes, and the name's variables
// are parts of it.
func inputSize(q *Query, v *Values) uint64 {
	return uint64(max(len(v.data), len(v.oldData), len(q.Name), len(q.User.ID)))
}
