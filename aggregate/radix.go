package aggregate

import "slices"

// radixSortMin is the shortest id list that sortIDs radix-sorts: below it the digit counts
// (256 words cleared per pass) cost more than pdqsort's comparisons.
const radixSortMin = 256

// sortIDs sorts ids ascending. Lists of radixSortMin ids or more go through an LSD radix sort
// with 8-bit digits (Knuth, TAOCP vol. 3, 5.2.5): one counting pass per byte up to the highest
// byte any id sets, so that dense dictionary ids below 2^24 take three passes and no
// comparisons. scratch is working memory, grown as needed and kept by the caller.
func sortIDs(ids []uint32, scratch *[]uint32) {
	if len(ids) < radixSortMin {
		slices.Sort(ids)
		return
	}
	var or uint32
	for _, x := range ids {
		or |= x
	}
	if cap(*scratch) < len(ids) {
		*scratch = make([]uint32, len(ids))
	}
	src, dst := ids, (*scratch)[:len(ids)]
	var count [256]int
	for shift := uint(0); shift < 32 && or>>shift != 0; shift += 8 {
		count = [256]int{}
		for _, x := range src {
			count[byte(x>>shift)]++
		}
		sum := 0
		for d, n := range count {
			count[d] = sum
			sum += n
		}
		for _, x := range src {
			d := byte(x >> shift)
			dst[count[d]] = x
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &ids[0] {
		copy(ids, src)
	}
}
