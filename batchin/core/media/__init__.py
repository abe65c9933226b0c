"""Media: embeddings, speech and transcription, images, video jobs (a durable worker) and stored
files. May import serving (admission, flow), billing and the shared pieces.
"""
