package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/engine/rvalue"
)

// printArtifact prints an R-value msgpack blob roughly as R's print() would.
// r is a blob's checked reader (Blobs.Open): the value is printed only once
// r has been read to its end, where a content that is not the blob's fails;
// a value that does not decode is reported as the corrupt blob it is, if
// it is one.
func printArtifact(w io.Writer, r io.Reader) error {
	v, err := rvalue.Decode(r)
	if err != nil {
		// The rest of r (nothing, if r failed already: its error stays).
		if _, cerr := io.Copy(io.Discard, r); errors.Is(cerr, errs.ErrCorrupt) {
			return cerr
		}
		return err
	}
	_, err = fmt.Fprintln(w, rvalue.Format(v))
	return err
}
