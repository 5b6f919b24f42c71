"""`keras-vae explore`: a trained model in the browser.

    explorer.py   what the views compute: NumPy in, NumPy out (no web)
    canvas.py     a drawing or an upload as the model's input (Pillow)
    cache.py      the latent map and test numbers, kept beside the model
    server.py     the FastAPI app: routes, JSON, PNG, one-line errors
    page.html     the page: plain HTML and JavaScript, no outside files

FastAPI and uvicorn are an optional extra: `pip install -e '.[explore]'`.
Only `server.py` imports them.
"""
