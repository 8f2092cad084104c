package datastore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/metaflow-r/metaflow/internal/mfconfig"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// Open returns the datastore Metaflow's settings select (the environment,
// then the config file): METAFLOW_DEFAULT_DATASTORE local (the default) is
// the folder localRoot; s3 is METAFLOW_DATASTORE_SYSROOT_S3, with its local
// cache in localRoot/_s3cache/<bucket>/<prefix> (flow names start with a letter, so no flow
// folder is ever called that).
func Open(localRoot string) (Store, error) {
	get, err := mfconfig.Lookup()
	if err != nil {
		return nil, err
	}
	switch kind := get("METAFLOW_DEFAULT_DATASTORE"); kind {
	case "", "local":
		return NewLocal(localRoot), nil
	case "s3":
		root := get("METAFLOW_DATASTORE_SYSROOT_S3")
		if root == "" {
			return nil, fmt.Errorf("METAFLOW_DEFAULT_DATASTORE is s3 but METAFLOW_DATASTORE_SYSROOT_S3 is not set: set it to s3://bucket/prefix")
		}
		bucket, prefix, err := s3io.ParseURL(root)
		if err != nil {
			return nil, fmt.Errorf("METAFLOW_DATASTORE_SYSROOT_S3: %w", err)
		}
		c, err := s3Client()
		if err != nil {
			return nil, err
		}
		return NewS3(c, root, filepath.Join(localRoot, "_s3cache", bucket, filepath.FromSlash(prefix)))
	default:
		return nil, fmt.Errorf("METAFLOW_DEFAULT_DATASTORE is %q: use local or s3", kind)
	}
}

// One S3 client per process: loading the SDK's configuration reads files
// and the environment, which do not change under a running engine.
var s3Client = sync.OnceValues(func() (*s3io.Client, error) {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		return nil, fmt.Errorf("AWS configuration for the S3 datastore: %w", err)
	}
	return s3io.New(cfg), nil
})
