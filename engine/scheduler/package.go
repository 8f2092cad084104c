package scheduler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/errs"
	"github.com/metaflow-r/metaflow/internal/ownedtmp"
)

// MaxPackageBytes bounds a run's code package (the sum of its files).
const MaxPackageBytes = 100 << 20

// PackageFile is one file of a run's code package as the client sends it
// (--package-suffixes): a path relative to the flow's folder, "/"-separated.
type PackageFile struct {
	Path    string
	Content []byte
}

// CodeFile is one stored file of a run's code package, as executors get it:
// a remote task finds it at Path (relative to its working directory); its
// content is the blob SHA of the flow (in Launch.Blobs).
type CodeFile struct {
	Path string
	SHA  string
	Size int64
}

// ValidatePackagePath checks one code package path: relative, clean,
// "/"-separated, inside the folder (no ".."), no NUL.
func ValidatePackagePath(p string) error {
	bad := func(why string) error { return fmt.Errorf("code package: invalid path %q: %s", p, why) }
	switch {
	case p == "":
		return bad("it is empty")
	case strings.ContainsRune(p, 0):
		return bad("it contains a NUL byte")
	case strings.Contains(p, `\`):
		return bad(`it contains "\" (paths are "/"-separated)`)
	case strings.HasPrefix(p, "/"):
		return bad("it is absolute (paths are relative to the flow's folder)")
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return bad(`it has a ".." element (paths stay inside the flow's folder)`)
		}
	}
	if path.Clean(p) != p || p == "." {
		return bad(fmt.Sprintf("it is not clean (as %q)", path.Clean(p)))
	}
	return nil
}

// ValidatePackage checks a code package before anything is written: every
// path valid, no path twice, no path that is also another's folder, and at
// most MaxPackageBytes in total. Its errors are of kind errs.ErrInvalid.
func ValidatePackage(files []PackageFile) error {
	return errs.Mark(errs.ErrInvalid, validatePackage(files))
}

func validatePackage(files []PackageFile) error {
	seen := make(map[string]bool, len(files))
	var total int64
	for _, f := range files {
		if err := ValidatePackagePath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("code package: path %q is given twice", f.Path)
		}
		seen[f.Path] = true
		total += int64(len(f.Content))
	}
	for _, f := range files {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return fmt.Errorf("code package: %q is a file and also the folder of %q", dir, f.Path)
			}
		}
	}
	if total > MaxPackageBytes {
		return errors.New(packageTooLarge(files, total))
	}
	return nil
}

// packageTooLarge is the one-line refusal of a package over the limit,
// naming its largest files (as the R client's check does).
func packageTooLarge(files []PackageFile, total int64) string {
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return len(files[idx[a]].Content) > len(files[idx[b]].Content) })
	var big []string
	for _, i := range idx[:min(3, len(idx))] {
		big = append(big, fmt.Sprintf("%s (%s)", files[i].Path, megabytes(int64(len(files[i].Content)))))
	}
	// The total is rounded up, so that it never reads as the limit itself.
	return fmt.Sprintf("the code package is %.1f MB, over the limit of %s: largest files %s; choose the files with --package-suffixes (run(package_suffixes = ...))",
		math.Ceil(float64(total)/(1<<20)*10)/10, megabytes(MaxPackageBytes), strings.Join(big, ", "))
}

func megabytes(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MB", n>>20)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

// packageParallel bounds the blobs stored at once (S3 round trips).
const packageParallel = 8

// storePackage stores the code package's files as content-addressed blobs
// of the flow (each distinct content once; one the store holds already is
// not written again) and then the run's manifest, before any task starts.
// The contents are released afterwards.
func (r *Run) storePackage(ctx context.Context) error {
	if len(r.Package) == 0 {
		return nil
	}
	flow, runID := r.Graph.Flow, r.meta.RunID
	byPath := map[string]datastore.Artifact{}
	contents := map[string][]byte{} // sha -> content, each distinct content once
	named := map[string]string{}    // sha -> a path with that content (for errors)
	for _, f := range r.Package {
		sum := sha256.Sum256(f.Content)
		sha := hex.EncodeToString(sum[:])
		byPath[f.Path] = datastore.Artifact{SHA: sha, Size: int64(len(f.Content))}
		if _, ok := contents[sha]; !ok {
			contents[sha], named[sha] = f.Content, f.Path
		}
	}
	shas := make([]string, 0, len(contents))
	for sha := range contents {
		shas = append(shas, sha)
	}
	sort.Strings(shas)
	errs := make([]error, len(shas))
	sem := make(chan struct{}, packageParallel)
	var wg sync.WaitGroup
	for i, sha := range shas {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.storePackageBlob(ctx, flow, sha, contents[sha]); err != nil {
				errs[i] = fmt.Errorf("store %s of the code package: %w", named[sha], err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := r.Store.PutPackage(ctx, flow, runID, byPath); err != nil {
		return fmt.Errorf("store the code package: %w", err)
	}
	r.pkg = make([]CodeFile, 0, len(byPath))
	for p, a := range byPath {
		r.pkg = append(r.pkg, CodeFile{Path: p, SHA: a.SHA, Size: a.Size})
	}
	sort.Slice(r.pkg, func(i, j int) bool { return r.pkg[i].Path < r.pkg[j].Path })
	r.Package = nil
	return nil
}

// storePackageBlob stores one content (hashed already) unless the store
// holds it.
func (r *Run) storePackageBlob(ctx context.Context, flow, sha string, content []byte) error {
	a, err := r.Store.PutSHA(ctx, flow, sha, bytes.NewReader(content))
	if err != nil {
		return err
	}
	if a.Size != int64(len(content)) {
		return fmt.Errorf("the datastore's blob %s has %d bytes, not %d", sha, a.Size, len(content))
	}
	return nil
}

// WorkdirPrefix starts the names of the private working folders of runs
// whose working directory is not on the engine's machine, followed by the
// engine's pid (internal/ownedtmp); CleanWorkdirs removes those of engines
// that are gone.
const WorkdirPrefix = "metaflow-work-"

// CleanWorkdirs removes the private working folders (WorkdirPrefix) in the
// temp folder left by engines that are gone, and returns them.
func CleanWorkdirs() ([]string, error) { return ownedtmp.Clean("", WorkdirPrefix) }

// runWorkdir makes sure the run's tasks have a working directory. A client
// on another machine (serve --listen) names a folder this machine does not
// have: the run then works in a private folder holding its code package, as
// a remote executor's task does, removed when the run ends.
func (r *Run) runWorkdir(ctx context.Context) (func(), error) {
	if !r.foreignWorkdir {
		return func() {}, nil
	}
	flow := r.Graph.Flow
	dir, err := ownedtmp.Make(WorkdirPrefix, flow+"-"+r.meta.RunID+"-")
	if err != nil {
		return nil, fmt.Errorf("make the run's working directory: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	pkg := make(map[string]string, len(r.pkg))
	for _, f := range r.pkg {
		pkg[f.Path] = f.SHA
	}
	if err := PlacePackage(pkg, dir, func(sha, dst string) error { return PlaceBlob(ctx, r.Store, flow, sha, dst) }); err != nil {
		cleanup()
		return nil, err
	}
	r.say("The working directory %q is not on the engine's machine: tasks run in %s with the code package's %d file(s).",
		r.Opts.Workdir, dir, len(r.pkg))
	r.Opts.Workdir = dir
	return cleanup, nil
}

// PlacePackage puts each file of a code package (relative path -> sha256
// of its blob) at its path under dir with get (PlaceBlob, or a download),
// in parallel. The paths are checked again here: none may leave dir. Used
// for a Batch task's working folder and for a run whose client's folder is
// not on this machine.
func PlacePackage(pkg map[string]string, dir string, get func(sha, dst string) error) error {
	if len(pkg) == 0 {
		return nil
	}
	files := make([]PackageFile, 0, len(pkg))
	for p := range pkg {
		files = append(files, PackageFile{Path: p})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	if err := ValidatePackage(files); err != nil {
		return err
	}
	errs := make([]error, len(files))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := get(pkg[f.Path], filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil {
				errs[i] = fmt.Errorf("download code package file %s: %w", f.Path, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return path != "" && err == nil && st.IsDir()
}

// PlaceBlob writes the blob sha of flow to the file dst (a code package
// file in a task's working folder), making dst's folder. The content is
// checked as it is read (Blobs.Open): a corrupt blob leaves no file.
func PlaceBlob(ctx context.Context, blobs datastore.Blobs, flow, sha, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := blobs.Open(ctx, flow, sha)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}
