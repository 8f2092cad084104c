package batch

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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// s3Store is the S3 access the Batch executor and the in-container task
// runner need: existence checks, uploads and downloads of single objects and
// presigned GET URLs, all through aws-sdk-go-v2's S3 client. Files go through
// the SDK's transfer manager: streamed from and to disk, and multipart (parts
// of s3PartSize, several at a time) once larger than one part.
//
// Endpoint: the SDK's resolution (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL,
// else AWS). Addressing is path-style (https://ENDPOINT/BUCKET/KEY), which
// emulators such as moto need and AWS accepts.
type s3Store struct {
	client     *s3.Client
	uploader   *manager.Uploader
	downloader *manager.Downloader
	presigner  *s3.PresignClient
}

// s3PartSize is the part size of multipart transfers (S3's minimum is 5 MiB;
// at most 10,000 parts make objects up to ~78 GiB).
const s3PartSize = 8 << 20

var errNotFound = errors.New("no such S3 object")

func newS3(cfg aws.Config) *s3Store {
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
	return &s3Store{
		client: client,
		uploader: manager.NewUploader(client, func(u *manager.Uploader) {
			u.PartSize = s3PartSize
		}),
		downloader: manager.NewDownloader(client, func(d *manager.Downloader) {
			d.PartSize = s3PartSize
		}),
		presigner: s3.NewPresignClient(client),
	}
}

// parseS3URL splits s3://bucket/prefix into bucket and prefix (no slashes
// at either end of the prefix).
func parseS3URL(s string) (bucket, prefix string, err error) {
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
func isNotFound(err error) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == 404
}

// s3Err wraps an SDK error with the operation and object, as errNotFound
// for a 404.
func s3Err(op, bucket, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("s3://%s/%s: %w", bucket, key, errNotFound)
	}
	return fmt.Errorf("S3 %s s3://%s/%s: %w", op, bucket, key, err)
}

// Exists reports whether the object exists (HEAD).
func (s *s3Store) Exists(ctx context.Context, bucket, key string) (bool, error) {
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, s3Err("HEAD", bucket, key, err)
}

// PutBytes uploads b (a single PUT: these are small records).
func (s *s3Store) PutBytes(ctx context.Context, bucket, key string, b []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	})
	if err != nil {
		return s3Err("PUT", bucket, key, err)
	}
	return nil
}

// PutFile uploads a file, streamed from disk, multipart when larger than
// one part. sha (its sha256, hex, or "") is not needed by the SDK, which
// hashes what it sends itself; it is kept for the callers that know it.
func (s *s3Store) PutFile(ctx context.Context, bucket, key, path, sha string) error {
	_ = sha
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// An *os.File is an io.ReaderAt and io.Seeker: the uploader reads each
	// part as a section of the file instead of buffering it.
	if _, err := s.uploader.Upload(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: f}); err != nil {
		return s3Err("upload", bucket, key, err)
	}
	return nil
}

// GetBytes downloads an object into memory (errNotFound if absent).
func (s *s3Store) GetBytes(ctx context.Context, bucket, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, s3Err("GET", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("download s3://%s/%s: %w", bucket, key, err)
	}
	return b, nil
}

// GetFile downloads an object into path (via a temp file and rename),
// in parts written straight to the file (errNotFound if absent).
func (s *s3Store) GetFile(ctx context.Context, bucket, key, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dl-*")
	if err != nil {
		return err
	}
	if _, err := s.downloader.Download(ctx, tmp, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return s3Err("GET", bucket, key, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// PresignGet returns a URL anyone can GET the object with until it expires.
func (s *s3Store) PresignGet(ctx context.Context, bucket, key string, expires time.Duration) (string, error) {
	req, err := s.presigner.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)},
		s3.WithPresignExpires(expires))
	if err != nil {
		return "", fmt.Errorf("presign s3://%s/%s: %w", bucket, key, err)
	}
	return req.URL, nil
}

func fileSHA(path string) (string, error) {
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
