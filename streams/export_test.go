package streams

// GroupedRegistrations returns how many registrations r sent in a group
// batch of several.
func GroupedRegistrations(r *Registry) uint64 { return r.group.shared.Load() }

// LastEventLookups returns how many times r's LastSeq read the last event
// by subject.
func LastEventLookups(r *Registry) uint64 { return r.lookups.Load() }
