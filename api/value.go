package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Decode parses one JSON value, keeping numbers exact. Anything but a
// single JSON value, or one that checkText refuses, is an INVALID_JSON
// error.
func Decode(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, Errorf(CodeInvalidJSON, "the body is not valid JSON: %v", err)
	}
	// Only JSON's own white space may follow: bytes.TrimSpace would also
	// accept "\f", "\v" and Unicode spaces such as U+00A0.
	if len(bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, Errorf(CodeInvalidJSON, "the body holds more than one JSON value")
	}
	if err := checkText(raw); err != nil {
		return nil, err
	}
	return v, nil
}

// Validate checks raw as Decode does, without building the value.
func Validate(raw []byte) error {
	if !json.Valid(raw) {
		if _, err := Decode(raw); err != nil {
			return err // says what is wrong
		}
		return Errorf(CodeInvalidJSON, "the body is not valid JSON")
	}
	return checkText(raw)
}

// Encode returns the compact JSON of v, without HTML escaping. Object keys
// come out sorted, so equal values encode to equal bytes.
func Encode(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("encode decoded JSON: %v", err)) // values come from Decode
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// Compact validates raw as one JSON value, as Decode does, and returns it
// without insignificant white space.
func Compact(raw []byte) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil { // it validates as it goes
		if _, derr := Decode(raw); derr != nil {
			return nil, derr // says what is wrong in the terms of Decode
		}
		return nil, Errorf(CodeInvalidJSON, "the body is not valid JSON: %v", err)
	}
	if err := checkText(b.Bytes()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Lookup returns the value at p inside doc, and false if it is missing.
func Lookup(doc any, p Path) (any, bool) {
	cur := doc
	for _, s := range p.segs {
		switch c := cur.(type) {
		case map[string]any:
			if s.Explicit {
				return nil, false
			}
			v, ok := c[s.Key]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			if s.Index < 0 || s.Index >= len(c) {
				return nil, false
			}
			cur = c[s.Index]
		default:
			return nil, false
		}
	}
	return cur, true
}

// SetAt returns doc with v placed at p. Missing intermediate objects are
// created; doc may be nil (a record that does not exist yet).
func SetAt(doc any, p Path, v any) (any, error) {
	return setAt(doc, p, 0, v)
}

func setAt(cur any, p Path, i int, v any) (any, error) {
	if i == len(p.segs) {
		return v, nil
	}
	s := p.segs[i]
	switch c := cur.(type) {
	case nil:
		if s.Explicit {
			return nil, Errorf(CodeInvalidPath, "path %q: [%d] indexes an array that does not exist", p.raw, s.Index)
		}
		child, err := setAt(nil, p, i+1, v)
		return map[string]any{s.Key: child}, err
	case map[string]any:
		if s.Explicit {
			return nil, Errorf(CodeInvalidPath, "path %q: [%d] indexes an object", p.raw, s.Index)
		}
		child, err := setAt(c[s.Key], p, i+1, v)
		if err != nil {
			return nil, err
		}
		c[s.Key] = child
		return c, nil
	case []any:
		switch {
		case s.Append || s.Index == len(c):
			child, err := setAt(nil, p, i+1, v)
			return append(c, child), err
		case s.Index >= 0 && s.Index < len(c):
			child, err := setAt(c[s.Index], p, i+1, v)
			if err != nil {
				return nil, err
			}
			c[s.Index] = child
			return c, nil
		}
		return nil, Errorf(CodeInvalidPath, "path %q: %q is not an index of an array of %d", p.raw, s.Key, len(c))
	}
	return nil, Errorf(CodeInvalidPath, "path %q: step %q goes into a %s", p.raw, s.Key, kind(cur))
}

// DeleteAt returns doc without the value at p, and false if there was none.
func DeleteAt(doc any, p Path) (any, bool) {
	if len(p.segs) == 0 {
		return doc, false
	}
	parentPath := Path{raw: p.raw, segs: p.segs[:len(p.segs)-1]}
	parent, ok := Lookup(doc, parentPath)
	if !ok {
		return doc, false
	}
	last := p.segs[len(p.segs)-1]
	switch c := parent.(type) {
	case map[string]any:
		if _, ok := c[last.Key]; !ok || last.Explicit {
			return doc, false
		}
		delete(c, last.Key)
		return doc, true
	case []any:
		if last.Index < 0 || last.Index >= len(c) {
			return doc, false
		}
		shorter := append(c[:last.Index:last.Index], c[last.Index+1:]...)
		out, err := SetAt(doc, parentPath, shorter)
		if err != nil {
			return doc, false
		}
		if len(parentPath.segs) == 0 {
			return shorter, true
		}
		return out, true
	}
	return doc, false
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}
