// File-size limits checked on `File.size` before a byte is read: the page must not copy a
// multi-gigabyte drop into the engine's 4 GiB wasm32 address space only for the engine to refuse it.
// IMAGE_BYTES is the engine's own limit (io::MAX_FILE_BYTES, kept equal by tests/structure.rs);
// checkpoints get 1 GiB here (2 GiB natively): the bytes, the parsed tensors and the model must
// all fit in the same address space. A CT (one NIfTI file or all the slices of a series) gets
// 610 MiB: no more than the studio's voxel limit (drr::studio::MAX_STUDIO_VOXELS, 160 M) at
// 4 bytes each (640 MB), so that a file the page lets through is not one the engine must refuse.

const MiB = 2 ** 20;
export const IMAGE_BYTES = 512 * MiB;
export const CHECKPOINT_BYTES = 1024 * MiB;
export const CONFIG_BYTES = 1 * MiB;
export const CT_BYTES = 610 * MiB;

/** Throws, naming the file and the limit, when `file` is larger than `limit` bytes. */
export function checkSize(file, limit, what) {
  if (file.size > limit) {
    throw new Error(`${file.name}: the file has ${file.size} bytes, over the ${limit / MiB} MiB limit for ${what} in the page`);
  }
}
