"""Video files, cameras and network streams through the SR runtime (PyAV: pip install 'smsr-engine[video]').

detect (is it a video?), source (demux/decode), colour (YUV<->RGB with the stream's matrix and range), frames
(batching, tiling, static-tile reuse), encode (encoder and pixel format), sink (file with remux / raw stdout),
pipeline (the threads), progress, cli (options and the run). Only detect and cli are imported without PyAV.
"""
