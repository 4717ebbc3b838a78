"""The input pipeline: frames, audio, frame/audio pairs and their tf.data datasets, and video I/O through ffmpeg.

- audio.py: audio files -> waveforms (any format; resampling; the recipe's window) and spectrograms' inputs.
- frames.py: image files -> model inputs (crop as LVS, squash as EZ-VSL), training augmentation.
- frame_cache.py: a folder of decoded, pre-resized training frames (train.py --cache), read instead of decoding.
- preprocessing.py: pairs on disk -> model inputs and tf.data datasets; the one module every script reads data with.
- tensorflow_decode.py: one training pair decoded and augmented with TensorFlow ops only (a tf.data service worker's
  decode: workers cannot run the client's Python).
- service_dataset.py: train.py --data_service: the training batches of preprocessing's order, decoded by a tf.data
  service's workers, put back in order, each once.
- video.py: probe a video, stream its frames, cut its audio, write a video with audio (ffmpeg / ffprobe pipes).

May import: nothing of the project (third-party libraries only).
"""
