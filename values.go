package postern

import "sync"

// Key names a typed value in a Values bag. Keys compare by identity: make
// one with NewKey in the package that owns the value and export it.
type Key[T any] struct{ name string }

// NewKey returns a new key; name is for debugging only.
func NewKey[T any](name string) *Key[T] { return &Key[T]{name: name} }

// String returns the key's name.
func (k *Key[T]) String() string { return k.name }

// Values is a typed bag through which filters pass results to later filters
// (an SPF result for DMARC, a DNSBL hit for logging). The zero value is
// ready to use and safe for concurrent use.
type Values struct {
	mu sync.RWMutex
	m  map[any]any
}

// SetValue stores val under key.
func SetValue[T any](v *Values, key *Key[T], val T) {
	v.mu.Lock()
	if v.m == nil {
		v.m = make(map[any]any)
	}
	v.m[key] = val
	v.mu.Unlock()
}

// GetValue returns the value stored under key.
func GetValue[T any](v *Values, key *Key[T]) (T, bool) {
	v.mu.RLock()
	x, ok := v.m[key]
	v.mu.RUnlock()
	if !ok {
		var zero T
		return zero, false
	}
	return x.(T), true
}

// DeleteValue removes key.
func DeleteValue[T any](v *Values, key *Key[T]) {
	v.mu.Lock()
	delete(v.m, key)
	v.mu.Unlock()
}

func (v *Values) copyTo(dst *Values) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if len(v.m) == 0 {
		return
	}
	dst.mu.Lock()
	defer dst.mu.Unlock()
	dst.m = make(map[any]any, len(v.m))
	for k, x := range v.m {
		dst.m[k] = x
	}
}
