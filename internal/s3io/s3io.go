// Package s3io reads and writes S3 objects through aws-sdk-go-v2: the
// operations the S3 datastore, the Batch executor and the in-container task
// runner need, with large files streamed and multipart.
package s3io

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/metaflow-r/metaflow/engine/errs"
)

// Client is S3 access: existence checks, listings, uploads and downloads of
// single objects and presigned GET URLs, all through aws-sdk-go-v2's S3 client. Files go through
// the SDK's transfer manager: streamed from and to disk, and multipart (parts
// of PartSize, several at a time) once larger than one part.
//
// Endpoint: the SDK's resolution (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL,
// else AWS). Addressing is path-style (https://ENDPOINT/BUCKET/KEY), which
// emulators such as moto need and AWS accepts.
type Client struct {
	client     *s3.Client
	uploader   *manager.Uploader
	downloader *manager.Downloader
	presigner  *s3.PresignClient
}

// PartSize is the part size of multipart transfers (S3's minimum is 5 MiB;
// at most 10,000 parts make objects up to ~78 GiB).
const PartSize = 8 << 20

// Errors of this package are marked with their kind (engine/errs): a
// missing bucket is ErrPrecondition, a missing object ErrNotFound, and any
// other failure of an S3 call ErrUnavailable.

// ErrNoBucket is wrapped by the errors of operations on a missing bucket.
var ErrNoBucket = errs.Mark(errs.ErrPrecondition, errors.New("no such bucket"))

// ErrNotFound is wrapped by the errors of reads of a missing object.
var ErrNotFound = errs.Mark(errs.ErrNotFound, errors.New("no such S3 object"))

// New returns a client for cfg (endpoint and credentials as the SDK resolves them).
func New(cfg aws.Config) *Client {
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		// Flexible checksums (CRC32 by default) only where S3 requires them,
		// none of the operations used here. moto 5.2.1 returns no CRC
		// checksums on GET, so "when supported" only makes the SDK log
		// "Response has no supported checksum" / "Skipped validation of
		// multipart checksum" on every download, into the task's stderr.
		// Uploads then rest on SigV4's payload hash (plain http) or TLS
		// (https), as before the SDK added flexible checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Client{
		client: client,
		uploader: manager.NewUploader(client, func(u *manager.Uploader) {
			u.PartSize = PartSize
		}),
		downloader: manager.NewDownloader(client, func(d *manager.Downloader) {
			d.PartSize = PartSize
		}),
		presigner: s3.NewPresignClient(client),
	}
}

// FromEnv returns a client with the SDK's default configuration
// (environment, shared files, instance role) as it is now.
func FromEnv(ctx context.Context) (*Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, errs.Precondition("AWS configuration for S3: %w", err)
	}
	return New(cfg), nil
}

// Default is one FromEnv client per process, made on first use.
var Default = sync.OnceValues(func() (*Client, error) { return FromEnv(context.Background()) })

// ParseURL splits s3://bucket/prefix into bucket and prefix (no slashes
// at either end of the prefix).
func ParseURL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q has no bucket", s)
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

// isNotFound reports whether err is an HTTP 404 from S3 (NoSuchKey,
// NoSuchBucket, HEAD's NotFound).
func isNotFound(err error) bool { return httpStatus(err) == 404 }

// s3Err wraps an SDK error with the operation and object, as ErrNotFound
// for a 404.
func s3Err(op, bucket, key string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
		return fmt.Errorf("S3 bucket %s: %w", bucket, ErrNoBucket)
	}
	if isNotFound(err) {
		return fmt.Errorf("s3://%s/%s: %w", bucket, key, ErrNotFound)
	}
	return errs.Unavailable("S3 %s s3://%s/%s: %w", op, bucket, key, err)
}

// Exists reports whether the object exists (HEAD).
func (c *Client) Exists(ctx context.Context, bucket, key string) (bool, error) {
	_, err := c.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, s3Err("HEAD", bucket, key, err)
}

// Size returns the object's size (a HEAD); ErrNotFound if it is absent.
func (c *Client) Size(ctx context.Context, bucket, key string) (int64, error) {
	out, err := c.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, s3Err("HEAD", bucket, key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// PutBytes uploads b (a single PUT: these are small records).
func (c *Client) PutBytes(ctx context.Context, bucket, key string, b []byte) error {
	_, err := c.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	})
	if err != nil {
		return s3Err("PUT", bucket, key, err)
	}
	return nil
}

// PutIfAbsent uploads b only if no object has the key (a conditional PUT,
// If-None-Match: *), and reports whether it did. An object already there
// with exactly b's bytes counts as ours: the SDK retries a PUT whose answer
// was lost, and the retry finds the first attempt's object. Callers make b
// unique to the writer (a timestamp, a nonce). 409 (another conditional
// write to the key in flight) is retried a few times. S3-compatible stores
// must honour If-None-Match for this to exclude other writers.
func (c *Client) PutIfAbsent(ctx context.Context, bucket, key string, b []byte) (bool, error) {
	for attempt := 0; ; attempt++ {
		_, err := c.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), IfNoneMatch: aws.String("*"),
			Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
		})
		switch code := httpStatus(err); {
		case err == nil:
			return true, nil
		case code == 412:
			have, gerr := c.GetBytes(ctx, bucket, key)
			if gerr != nil {
				return false, gerr
			}
			return bytes.Equal(have, b), nil
		case code == 409 && attempt < 5:
			select {
			case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
			case <-ctx.Done():
				return false, ctx.Err()
			}
		default:
			return false, s3Err("conditional PUT", bucket, key, err)
		}
	}
}

// httpStatus is the HTTP status of an SDK error (0 if it has none).
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// ListDirs returns the names one level below prefix ("a/b" lists a/b/x/...
// as "x"; "" lists the bucket's top level): S3's common prefixes with
// delimiter "/", every page.
func (c *Client) ListDirs(ctx context.Context, bucket, prefix string) ([]string, error) {
	dir := prefix + "/"
	if prefix == "" {
		dir = ""
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(dir), Delimiter: aws.String("/")}
	var out []string
	p := s3.NewListObjectsV2Paginator(c.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s3Err("LIST", bucket, dir, err)
		}
		for _, cp := range page.CommonPrefixes {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), dir), "/"))
		}
	}
	return out, nil
}

// CreateBucket creates a bucket (tests and first-time setup).
func (c *Client) CreateBucket(ctx context.Context, bucket string) error {
	if _, err := c.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return errs.Unavailable("create bucket %s: %w", bucket, err)
	}
	return nil
}

// PutFile uploads a file, streamed from disk, multipart when larger than
// one part.
func (c *Client) PutFile(ctx context.Context, bucket, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// An *os.File is an io.ReaderAt and io.Seeker: the uploader reads each
	// part as a section of the file instead of buffering it.
	if _, err := c.uploader.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: f}); err != nil {
		return s3Err("upload", bucket, key, err)
	}
	return nil
}

// PutReader uploads what r holds until EOF, streamed in parts (multipart
// when longer than one part). An error from r aborts the upload: nothing
// is stored at the key.
func (c *Client) PutReader(ctx context.Context, bucket, key string, r io.Reader) error {
	if _, err := c.uploader.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: r}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("upload s3://%s/%s: %w", bucket, key, ctx.Err())
		}
		if errs.Kind(err) != nil { // r's own error (a corrupt stream) keeps its kind
			return fmt.Errorf("upload s3://%s/%s: %w", bucket, key, err)
		}
		return s3Err("upload", bucket, key, err)
	}
	return nil
}

// PutFileIfMissing uploads a file unless the key exists: for
// content-addressed keys, where an existing object has the same bytes. A
// file of one part goes up in one conditional PUT (If-None-Match: *; 412
// means it is there); a larger one is looked for first (a HEAD), so that a
// blob S3 has is not sent again.
func (c *Client) PutFileIfMissing(ctx context.Context, bucket, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > PartSize {
		ok, err := c.Exists(ctx, bucket, key)
		if err != nil || ok {
			return err
		}
		return c.PutFile(ctx, bucket, key, path)
	}
	for attempt := 0; ; attempt++ {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		_, err := c.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), IfNoneMatch: aws.String("*"),
			Body: f, ContentLength: aws.Int64(fi.Size()),
		})
		switch code := httpStatus(err); {
		case err == nil, code == 412:
			return nil
		case code == 409 && attempt < 5: // another conditional write in flight
			select {
			case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return s3Err("conditional PUT", bucket, key, err)
		}
	}
}

// GetBytes downloads an object into memory (ErrNotFound if absent).
func (c *Client) GetBytes(ctx context.Context, bucket, key string) ([]byte, error) {
	out, err := c.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, s3Err("GET", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, errs.Unavailable("download s3://%s/%s: %w", bucket, key, err)
	}
	return b, nil
}

// GetReader opens an object for reading as one streamed GET and returns
// its size (ErrNotFound if absent). The caller closes the body.
func (c *Client) GetReader(ctx context.Context, bucket, key string) (io.ReadCloser, int64, error) {
	out, err := c.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, 0, s3Err("GET", bucket, key, err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}

// ListKeys returns the keys below prefix/ ("" lists the bucket), relative
// to it, in S3's (byte) order: every page of a listing without delimiter.
func (c *Client) ListKeys(ctx context.Context, bucket, prefix string) ([]string, error) {
	dir := prefix + "/"
	if prefix == "" {
		dir = ""
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(dir)}
	var out []string
	p := s3.NewListObjectsV2Paginator(c.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s3Err("LIST", bucket, dir, err)
		}
		for _, o := range page.Contents {
			out = append(out, strings.TrimPrefix(aws.ToString(o.Key), dir))
		}
	}
	return out, nil
}

// GetFile downloads an object into path (via a temp file and rename),
// in parts written straight to the file (ErrNotFound if absent).
func (c *Client) GetFile(ctx context.Context, bucket, key, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dl-*")
	if err != nil {
		return err
	}
	if _, err := c.downloader.Download(ctx, tmp, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return s3Err("GET", bucket, key, err)
	}
	// Durable before visible, as the datastore's own writes.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ErrNoNewBytes: the object exists but holds no bytes past the offset.
var ErrNoNewBytes = errors.New("no new bytes")

// GetFrom returns the object's bytes from off on, in one ranged GET, so
// following a growing object (a log) costs only its new bytes: ErrNotFound
// if there is no such object, ErrNoNewBytes if it is not longer than off.
func (c *Client) GetFrom(ctx context.Context, bucket, key string, off int64) ([]byte, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if off > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := c.client.GetObject(ctx, in)
	if err != nil {
		if httpStatus(err) == 416 {
			return nil, ErrNoNewBytes
		}
		return nil, s3Err(fmt.Sprintf("GET (from byte %d)", off), bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, errs.Unavailable("download s3://%s/%s: %w", bucket, key, err)
	}
	if off > 0 && out.ContentRange == nil {
		// A server that ignored the range sent the whole object.
		if int64(len(b)) <= off {
			return nil, ErrNoNewBytes
		}
		b = b[off:]
	}
	return b, nil
}

// PresignGet returns a URL anyone can GET the object with until it expires.
func (c *Client) PresignGet(ctx context.Context, bucket, key string, expires time.Duration) (string, error) {
	req, err := c.presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)},
		s3.WithPresignExpires(expires))
	if err != nil {
		return "", errs.Precondition("presign s3://%s/%s: %w", bucket, key, err)
	}
	return req.URL, nil
}

// FileSHA returns the hex sha256 of a file.
func FileSHA(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
