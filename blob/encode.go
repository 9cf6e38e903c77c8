package blob

import (
	"encoding/binary"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"lukechampine.com/blake3/guts"
)

// The outboard is built a segment at a time, in parallel: a segment is a
// run of segGroups chunk groups starting at a multiple of segSize, the
// last one shorter. Every segment is a whole subtree of the Bao tree (the
// tree splits a range at the largest power of two below its length, so
// every split above a segment falls on a multiple of segSize), and the
// pre-order outboard holds a subtree's parent nodes in one contiguous
// run: each segment's nodes are computed and written on their own, and
// only the parents above the segments (one per segment) wait for all of
// them. The result is byte for byte what bao.Encode writes.
const (
	segGroups = 256
	segSize   = GroupSize * segGroups // 4 MiB
)

// compressGroup compresses a group in one SIMD pass of guts: the two
// constants fail to compile if a group is not exactly that.
const (
	_ uint = GroupSize - guts.MaxSIMD*guts.ChunkSize
	_ uint = guts.MaxSIMD*guts.ChunkSize - GroupSize
)

// writers is how many goroutines write segments: two direct writes in
// flight kept a disk shared with other work busier than one (share of
// 1 GiB at 526 against 397 MiB/s, median of 14 alternating runs at load
// average 12-16, faster in 12 of the 14). writeAhead is how many
// segments, filled and hashed, may be held for the writers beyond one
// per worker: enough for both writers and two waiting.
const (
	writers    = 2
	writeAhead = 4
)

// ahead is writeAhead where the writers write the data, and none where
// they write only the outboard's nodes (a few KiB a segment, into the
// page cache): building the outboard of a blob on disk holds one segment
// per worker, as before the writers.
func ahead(data io.WriterAt) int {
	if data == nil {
		return 0
	}
	return writeAhead
}

// segBuf is a segment's bytes and parent nodes, between a worker that
// fills and hashes them and the writer.
type segBuf struct {
	data, nodes []byte
	seg         *segment
}

// segment is one subtree of the outboard being built.
type segment struct {
	off, n int64     // its bytes in the blob
	obOff  int64     // where its parent nodes start in the outboard
	cv     [8]uint32 // its chaining value, once hashed
}

// parents returns the number of parent nodes of the Bao tree of n bytes.
func parents(n int64) int64 {
	if n <= GroupSize {
		return 0
	}
	return (n+GroupSize-1)/GroupSize - 1
}

// segments lays out the segments of a blob of size bytes, in order.
func segments(size int64) []segment {
	var segs []segment
	var rec func(off, n, obOff int64)
	rec = func(off, n, obOff int64) {
		if n <= segSize {
			segs = append(segs, segment{off: off, n: n, obOff: obOff})
			return
		}
		mid := int64(1) << (bits.Len64(uint64(n-1)) - 1)
		rec(off, mid, obOff+64)
		rec(off+mid, n-mid, obOff+64+parents(mid)*64)
	}
	rec(0, size, 8)
	return segs
}

// encodeParallel computes the Bao outboard (group [Group]) of a blob of
// size bytes into ob, and returns the root hash. fill writes the blob's
// bytes [off, off+len(p)) into p; it is called once per segment, from
// several goroutines at once unless sequential is set, in which case the
// calls come one at a time in the order of the blob (for a source that
// can only be read in order). If data is not nil, each segment is also
// written to it at its offset, by the writers' goroutines, while the
// workers fill and hash the segments after it. The first error of fill or a write stops
// the work and is returned.
func encodeParallel(data, ob io.WriterAt, size int64, sequential bool, fill func(p []byte, off int64) error) (Hash, error) {
	segs := segments(size)
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(size))
	if _, err := ob.WriteAt(hdr[:], 0); err != nil {
		return Hash{}, err
	}
	rootFlags := uint32(0)
	if len(segs) == 1 {
		rootFlags = guts.FlagRoot // the segment is the whole tree
	}

	workers := min(runtime.GOMAXPROCS(0), len(segs))
	var (
		next   atomic.Int64 // the next segment to take
		mu     sync.Mutex   // orders sequential fills; guards err
		err    error
		failed atomic.Bool
		wg     sync.WaitGroup
		// Buffers circulate from free to a worker, which fills and
		// hashes one, to a writer, which writes it and frees it: the
		// workers keep every core on filling and hashing while the disk
		// takes the segments before (a direct write waits for the
		// device), and memory stays at nbuf segments.
		nbuf    = min(workers+ahead(data), len(segs))
		free    = make(chan *segBuf, nbuf)
		written = make(chan *segBuf, nbuf)
		wwg     sync.WaitGroup
	)
	fail := func(e error) {
		mu.Lock()
		if err == nil {
			err = e
		}
		mu.Unlock()
		failed.Store(true)
	}
	for range nbuf {
		free <- &segBuf{data: alignedBuffer(segSize), nodes: make([]byte, parents(segSize)*64)}
	}
	for range writers {
		wwg.Go(func() {
			for b := range written {
				if !failed.Load() {
					if data != nil {
						if _, werr := data.WriteAt(b.data[:b.seg.n], b.seg.off); werr != nil {
							fail(werr)
						}
					}
					if nb := b.nodes[:parents(b.seg.n)*64]; len(nb) > 0 && !failed.Load() {
						if _, werr := ob.WriteAt(nb, b.seg.obOff); werr != nil {
							fail(werr)
						}
					}
				}
				free <- b
			}
		})
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				b := <-free
				var ferr error
				if sequential {
					mu.Lock() // the segments are filled in order
				}
				i := next.Add(1) - 1
				if i < int64(len(segs)) && !failed.Load() {
					ferr = fill(b.data[:segs[i].n], segs[i].off)
				}
				if sequential {
					mu.Unlock()
				}
				if i >= int64(len(segs)) || ferr != nil || failed.Load() {
					free <- b
					if ferr != nil {
						fail(ferr)
					}
					return
				}
				sg := &segs[i]
				sg.cv = encodeTree(b.data[:sg.n], uint64(sg.off)/guts.ChunkSize, rootFlags, b.nodes[:parents(sg.n)*64])
				b.seg = sg
				written <- b
			}
		}()
	}
	wg.Wait()
	close(written)
	wwg.Wait()
	if err != nil {
		return Hash{}, err
	}

	// The parents above the segments, from their chaining values.
	var werr error
	var rec func(off, n, obOff int64, flags uint32) [8]uint32
	rec = func(off, n, obOff int64, flags uint32) [8]uint32 {
		if n <= segSize {
			return segs[off/segSize].cv
		}
		mid := int64(1) << (bits.Len64(uint64(n-1)) - 1)
		l := rec(off, mid, obOff+64, 0)
		r := rec(off+mid, n-mid, obOff+64+parents(mid)*64, 0)
		var node [64]byte
		putCV(node[:32], &l)
		putCV(node[32:], &r)
		if _, err := ob.WriteAt(node[:], obOff); err != nil && werr == nil {
			werr = err
		}
		return guts.ChainingValue(guts.ParentNode(l, r, &guts.IV, flags))
	}
	root := rec(0, size, 8, guts.FlagRoot)
	if werr != nil {
		return Hash{}, werr
	}
	var h Hash
	putCV(h[:], &root)
	return h, nil
}

// encodeTree hashes p, the bytes of a subtree of the Bao tree starting at
// chunk counter, writes its parent nodes in pre-order to nodes (exactly
// parents(len(p))*64 bytes) and returns its chaining value, with flags
// set on its root node. p must have the capacity of a whole chunk group
// past its last byte or be a whole number of groups long.
func encodeTree(p []byte, counter uint64, flags uint32, nodes []byte) [8]uint32 {
	if len(p) <= GroupSize {
		n := compressGroup(p, counter)
		n.Flags |= flags
		return guts.ChainingValue(n)
	}
	mid := 1 << (bits.Len64(uint64(len(p)-1)) - 1)
	lnodes := 64 + parents(int64(mid))*64
	l := encodeTree(p[:mid], counter, 0, nodes[64:lnodes])
	r := encodeTree(p[mid:], counter+uint64(mid)/guts.ChunkSize, 0, nodes[lnodes:])
	putCV(nodes[:32], &l)
	putCV(nodes[32:64], &r)
	return guts.ChainingValue(guts.ParentNode(l, r, &guts.IV, flags))
}

// compressGroup returns the root node of the chunk group p (at most
// GroupSize bytes) whose first chunk has index counter, as bao does: a
// group is 16 chunks, which guts compresses in one SIMD pass.
func compressGroup(p []byte, counter uint64) guts.Node {
	var buf *[guts.MaxSIMD * guts.ChunkSize]byte
	if cap(p) >= GroupSize {
		buf = (*[guts.MaxSIMD * guts.ChunkSize]byte)(p[:GroupSize])
	} else {
		buf = new([guts.MaxSIMD * guts.ChunkSize]byte)
		copy(buf[:], p)
	}
	return guts.CompressBuffer(buf, len(p), &guts.IV, counter, 0)
}

func putCV(b []byte, cv *[8]uint32) {
	for i, w := range cv {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
}
