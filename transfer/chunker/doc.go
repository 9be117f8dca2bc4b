// Package chunker splits a byte stream into content-defined chunks with
// FastCDC (gear rolling hash, normalised chunking). Boundaries depend only on
// the bytes near them, so an edit in the middle of a model file moves or
// changes only the chunks around the edit and every other chunk keeps its
// CID: that is what makes incremental model upgrades cheap in transfer.
package chunker
