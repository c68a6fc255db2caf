"""Serve a trained run over HTTP: ``synergraph serve --run RUN_DIR`` (FastAPI + uvicorn).

    GET  /health                  the run, model, dataset and catalogue size
    POST /recommend               {"users": [...], "k": 20, "exclude_seen": true,
                                   "candidates": [...] (optional), "fallback": "error"|"popular"}
    POST /items                   {"items": [{"id": "...", "features": {"image": [...], "text": [...]}}]}:
                                  new items, scored from their content from then on (multimodal models)
    GET  /items/{item}/similar    ?k=10: items with the closest content (raw modality features)
    GET  /docs                    OpenAPI documentation

Ids are the dataset's raw ids when it has id mappings (as in ``synergraph recommend``), else
internal integer ids. Unknown users or items answer 404, malformed requests 422, both with a
JSON ``detail``. Requests only name ids and sizes: nothing in a request reaches the file system.
The model and its embeddings are loaded once at start-up; scoring is serialised by a lock so
that concurrent requests share the CPU threads instead of oversubscribing them.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal, Union

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from dgl_synergraph.api import Recommendation, TrainedRun
from dgl_synergraph.errors import DataError

# One request may ask for many users at once, but not for an unbounded amount of work.
MAX_USERS_PER_REQUEST = 10_000
MAX_CANDIDATES = 100_000
MAX_NEW_ITEMS = 10_000
Id = Union[int, str]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[Id] = Field(min_length=1, max_length=MAX_USERS_PER_REQUEST, description="User ids.")
    k: int = Field(10, ge=1, description="Items per user (at most the catalogue size).")
    exclude_seen: bool = Field(True, description="Leave out the items each user interacted with in training.")
    candidates: list[Id] | None = Field(None, min_length=1, max_length=MAX_CANDIDATES,
                                        description="Rank only these items (a re-ranking stage).")
    fallback: Literal["error", "popular"] = Field(
        "error", description="Unknown users: 404, or the most popular training items.")


class NewItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id | None = Field(None, description="Its id (required when the catalogue has raw ids).")
    features: dict[str, list[float]] = Field(description="One feature vector per modality of the model.")


class AddItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[NewItem] = Field(min_length=1, max_length=MAX_NEW_ITEMS)


class AddItemsResponse(BaseModel):
    added: list[Id]
    items: int = Field(description="Catalogue size after adding them.")


class RecommendationOut(BaseModel):
    user: Id
    items: list[Id]
    scores: list[float]
    fallback: bool = False


class RecommendResponse(BaseModel):
    recommendations: list[RecommendationOut]


class SimilarResponse(BaseModel):
    item: Id
    similar: list[Id]
    scores: list[float]


class Health(BaseModel):
    status: Literal["ok"]
    run: str
    model: str
    dataset: str
    users: int
    items: int


def _out(rec: Recommendation) -> RecommendationOut:
    return RecommendationOut(user=_plain(rec.user), items=[_plain(i) for i in rec.items], scores=rec.scores,
                             fallback=rec.fallback)


def _plain(value):
    """numpy scalars and objects as JSON-friendly int or str."""
    return value if isinstance(value, (int, str)) else (int(value) if hasattr(value, "__index__") else str(value))


def _not_found(err: DataError) -> HTTPException:
    message = str(err)
    return HTTPException(status_code=404 if message.startswith("unknown") else 422, detail=message)


def create_app(run: TrainedRun) -> FastAPI:
    """The HTTP app for ``run``; loads its dataset, model and embeddings before returning."""
    run.score([0], [0], ids="internal")  # loads the model and computes every embedding once
    lock = threading.Lock()
    app = FastAPI(title="SynerGraph", summary="Recommendations from a trained SynerGraph run.")

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", run=str(run.run_dir), model=run.config.model, dataset=run.config.dataset,
                      users=run.dataset.n_users, items=run.n_items)

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(request: RecommendRequest) -> RecommendResponse:
        if request.k > run.n_items:
            raise HTTPException(status_code=422, detail=f"k: at most the number of items ({run.n_items}), got {request.k}")
        with lock:
            try:
                if request.candidates is None:
                    recs = run.recommend(request.users, k=request.k, exclude_seen=request.exclude_seen,
                                         fallback=request.fallback)
                else:
                    recs = [run.rank(user, request.candidates, k=request.k, exclude_seen=request.exclude_seen)
                            for user in request.users]
            except DataError as err:
                raise _not_found(err) from None
        return RecommendResponse(recommendations=[_out(rec) for rec in recs])

    @app.get("/items/{item}/similar", response_model=SimilarResponse)
    def similar(item: Annotated[str, Path(max_length=200)],
                k: Annotated[int, Query(ge=1, description="How many similar items.")] = 10) -> SimilarResponse:
        if k >= run.n_items:
            raise HTTPException(status_code=422, detail=f"k: at most the number of other items ({run.n_items - 1}), got {k}")
        with lock:
            try:
                rec = run.similar_items(item, k=k)
            except DataError as err:
                raise _not_found(err) from None
        return SimilarResponse(item=_plain(rec.user), similar=[_plain(i) for i in rec.items], scores=rec.scores)

    @app.post("/items", response_model=AddItemsResponse, status_code=201)
    def add_items(request: AddItemsRequest) -> AddItemsResponse:
        modalities = sorted({m for item in request.items for m in item.features})
        ids = [item.id for item in request.items]
        if any(set(item.features) != set(modalities) for item in request.items):
            raise HTTPException(status_code=422, detail="items: every item must give the same modalities")
        features = {m: [item.features[m] for item in request.items] for m in modalities}
        with lock:
            try:
                added = run.add_items(features, None if all(i is None for i in ids) else [str(i) for i in ids])
            except DataError as err:
                raise HTTPException(status_code=422, detail=str(err)) from None
        return AddItemsResponse(added=[_plain(i) for i in added], items=run.n_items)

    return app


def serve(run: TrainedRun, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted (one process; scoring is serialised)."""
    import uvicorn

    uvicorn.run(create_app(run), host=host, port=port, log_level=log_level)
