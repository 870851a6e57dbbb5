//! COCO detection labels of nodules: one category, boxes as `[x, y, width, height]` pixels.
//! `dxr drr`'s sets, the studio and the dataset factory write them.

/// One COCO annotation (category 1, the nodule): box `[x0, y0, x1, y1]` in pixels written as
/// `[x, y, width, height]`, numbered `id` in image `image_id`, with `extra` fields appended.
pub fn coco_annotation(
    id: usize,
    image_id: usize,
    [x0, y0, x1, y1]: [f64; 4],
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut a = serde_json::json!({
        "id": id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
        "iscrowd": 0,
    });
    if let (Some(a), serde_json::Value::Object(extra)) = (a.as_object_mut(), extra) {
        a.extend(extra);
    }
    a
}

/// A COCO file: its description, images and annotations, the one category.
pub fn coco_file(
    description: &str,
    images: Vec<serde_json::Value>,
    annotations: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "nodule", "supercategory": "lung"}],
    })
}
