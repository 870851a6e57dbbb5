// What a picked or dropped file is: the one rule for checkpoints (`.bin` included), model configs
// and images. The file inputs' accept lists, the model loader and drag-and-drop all ask here.
// Images are recognised by their content (the engine's decoder), so anything that is not a
// checkpoint or a config goes to the queue.

export const CHECKPOINT_TYPES = ['.pt', '.pth', '.safetensors', '.bin'];
export const CONFIG_TYPES = ['.json'];
export const IMAGE_TYPES = ['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.dcm', 'application/dicom'];

const hasType = (types) => (file) => types.some((t) => file.name.toLowerCase().endsWith(t));
export const isCheckpoint = hasType(CHECKPOINT_TYPES);
export const isConfig = hasType(CONFIG_TYPES);
export const isModelFile = (file) => isCheckpoint(file) || isConfig(file);

/** Splits files into the model's (checkpoint + config) and the images. */
export function sortFiles(files) {
  const models = files.filter(isModelFile);
  return { models, images: files.filter((f) => !isModelFile(f)) };
}

/** The checkpoint types for people: ".pt, .pth, .safetensors or .bin". */
export const checkpointTypesText = `${CHECKPOINT_TYPES.slice(0, -1).join(', ')} or ${CHECKPOINT_TYPES.at(-1)}`;

/** Sets the accept lists of the model and image file inputs. */
export function setAcceptLists(modelInput, imageInput) {
  modelInput.accept = [...CHECKPOINT_TYPES, ...CONFIG_TYPES].join(',');
  imageInput.accept = IMAGE_TYPES.join(',');
}
