"""NCS-C: the ask/tell contract, bounds, exact resume, the legacy OLMP switch, and that it searches."""

import json

import numpy as np
import pytest

from keras_prune.search import NCS, bhattacharyya_min, minimize


def _run(search, fn):
    while not search.done:
        search.tell([fn(x) for x in search.ask()])
    return search


def _sphere(x):
    return float(np.sum((x - 1.5) ** 2))


def _rastrigin(x):
    return float(10 * x.size + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


def test_ask_tell_contract_single_point_start():
    search = NCS(np.full(3, 0.5), bounds=(0.0, 10.0), budget=31, population_size=5, seed=0)
    first = search.ask()
    assert first.shape == (1, 3)  # one evaluation of the start, shared by the N copies
    np.testing.assert_array_equal(search.ask(), first)  # asking again repeats the batch
    with pytest.raises(ValueError, match="one per asked candidate"):
        search.tell([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        search.tell([np.nan])
    search.tell([2.0])
    np.testing.assert_array_equal(search.fitness, np.full(5, 2.0))
    assert search.evaluations == 1 and search.generation == 0 and search.trajectory == [2.0]
    with pytest.raises(RuntimeError, match="ask"):
        search.tell([1.0] * 5)
    offspring = search.ask()
    assert offspring.shape == (5, 3)
    search.tell(np.arange(5.0))
    assert search.generation == 1 and search.evaluations == 6
    assert search.result().fitness == 0.0
    np.testing.assert_array_equal(search.result().x, offspring[0])


def test_population_start_evaluates_every_row():
    initial = np.random.default_rng(0).uniform(-1, 1, (4, 2))
    search = NCS(initial, bounds=(-1, 1), budget=20, seed=0)
    np.testing.assert_array_equal(search.ask(), initial)
    with pytest.raises(ValueError, match="population_size"):
        NCS(initial, bounds=(-1, 1), budget=20, population_size=5)


@pytest.mark.parametrize("kwargs", [
    dict(bounds=(1.0, 0.0)), dict(population_size=1), dict(sigma=0.0), dict(boundary="wrap"),
    dict(budget=0), dict(r=1.5),
])
def test_bad_settings_raise_value_error(kwargs):
    settings = dict(bounds=(0.0, 1.0), budget=10, population_size=3) | kwargs
    with pytest.raises(ValueError):
        NCS(np.full(2, 0.5), **settings)


def test_initial_outside_bounds_raises():
    with pytest.raises(ValueError, match="within `bounds`"):
        NCS(np.array([2.0]), bounds=(0.0, 1.0), budget=10)


@pytest.mark.parametrize("boundary", ["clip", "reflect"])
def test_offspring_stay_within_bounds(boundary):
    lower, upper = np.array([0.0, -1.0, 5.0]), np.array([1.0, 1.0, 20.0])
    search = NCS(np.array([0.5, 0.0, 6.0]), bounds=(lower, upper), budget=2001, sigma=50.0,
                 boundary=boundary, seed=1)
    offspring = []
    while not search.done:
        x = search.ask()
        offspring.append(x)
        search.tell(np.sum(x, axis=1))
    offspring = np.concatenate(offspring)
    assert np.all(offspring >= lower) and np.all(offspring <= upper)
    if boundary == "clip":  # OLMP: an out-of-range value lands just inside the bound
        on_edge = np.isclose(offspring, lower + 1e-4) | np.isclose(offspring, upper - 1e-4)
        assert on_edge.mean() > 0.5  # sigma = 50 sends most values out of range
        assert np.all((offspring >= lower + 1e-4) & (offspring <= upper - 1e-4))


def test_budget_is_a_hard_cap_and_done_stops_asking():
    search = _run(NCS(np.zeros(2), bounds=(-1, 1), budget=1600, seed=0), _sphere)
    assert search.generation == 159 and search.evaluations == 1591 == search.planned_evaluations
    assert len(search.trajectory) == 160
    with pytest.raises(RuntimeError, match="budget"):
        search.ask()


def test_legacy_olmp_never_moves_population_and_shrinks_sigma():
    # OLMP's setting: N copies of the current c-rates, sigma 5, bounds [0, 10], Tmax 1600,
    # and a non-negative fitness (the remaining fraction).
    start = np.full(4, 0.001)
    search = _run(NCS(start, bounds=(0.0, 10.0), budget=1600, sigma=5.0, legacy_olmp=True, seed=0),
                  lambda x: float(np.mean(x)) / 10)
    assert search.generation == 160  # OLMP's accounting: FES starts at N, runs while <= Tmax
    np.testing.assert_array_equal(search.population, np.tile(start, (10, 1)))
    np.testing.assert_allclose(search.sigma, 5.0 * 0.99**16)  # 16 epochs, no success
    assert search.result().fitness < 0.001 / 10  # the best sample is still kept
    trajectory = search.trajectory
    assert all(b <= a for a, b in zip(trajectory, trajectory[1:]))


def test_canonical_ncs_moves_population_on_the_same_problem():
    start = np.full(4, 0.001)
    search = _run(NCS(start, bounds=(0.0, 10.0), budget=1600, sigma=5.0, seed=0),
                  lambda x: float(np.mean(x)) / 10)
    assert not np.allclose(search.population, start)


def test_ties_at_the_best_value_do_not_produce_nan():
    # f(x_i) = f(x'_i) = f* everywhere: the 0/0 of the fitness normalisation.
    search = _run(NCS(np.zeros(3), bounds=(-1, 1), budget=201, seed=0), lambda x: 1.0)
    assert np.all(np.isfinite(search.population)) and np.all(np.isfinite(search.sigma))
    assert not np.allclose(search.population, 0.0)  # diversity alone moves the processes


def _bhattacharyya_direct(m1, s1, m2, s2):
    cov1, cov2 = np.diag(s1**2), np.diag(s2**2)
    mean_cov = (cov1 + cov2) / 2
    diff = m1 - m2
    return (diff @ np.linalg.inv(mean_cov) @ diff / 8
            + 0.5 * np.log(np.linalg.det(mean_cov) / np.sqrt(np.linalg.det(cov1) * np.linalg.det(cov2))))


def test_bhattacharyya_min_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    means, others = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    sigma = rng.uniform(0.1, 2.0, (5, 3))
    expected = [min(_bhattacharyya_direct(means[i], sigma[i], others[j], sigma[j])
                    for j in range(5) if j != i) for i in range(5)]
    np.testing.assert_allclose(bhattacharyya_min(means, others, sigma), expected, rtol=1e-10)


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_bhattacharyya_min_is_finite_for_tiny_and_unequal_sigmas(offset):
    sigma = np.array([[1e-200, 1.0], [1e-200, 1e-200], [1.0, 1e100]])
    with np.errstate(invalid="raise"):  # no NaN on the way
        distance = bhattacharyya_min(np.zeros((3, 2)), np.full((3, 2), offset), sigma)
    assert np.all(np.isfinite(distance)) and np.all(distance >= 0)


def _straight_and_resumed(split, via_from_state, **settings):
    def fresh():
        return NCS(np.zeros(5), bounds=(-3, 3), budget=403, population_size=6, seed=7, **settings)

    straight = _run(fresh(), _rastrigin)
    search, step = fresh(), 0
    while not search.done:
        candidates = search.ask()
        if step == split:  # save and restore with the batch asked but not yet told
            state = json.loads(json.dumps(search.get_state()))
            search = NCS.from_state(state) if via_from_state else fresh()
            if not via_from_state:
                search.set_state(state)
            np.testing.assert_array_equal(search.ask(), candidates)
        search.tell([_rastrigin(x) for x in candidates])
        step += 1
    return straight, search


@pytest.mark.parametrize("split,via_from_state,settings", [
    (0, False, {}), (23, False, {}), (23, True, {"boundary": "reflect"}),
    (40, True, {"legacy_olmp": True}),
])
def test_state_round_trip_continues_exactly(split, via_from_state, settings):
    straight, resumed = _straight_and_resumed(split, via_from_state, **settings)
    assert resumed.get_state() == straight.get_state()
    assert resumed.result().fitness == straight.result().fitness


def test_set_state_rejects_other_settings():
    state = NCS(np.zeros(2), bounds=(-1, 1), budget=50, seed=0).get_state()
    other = NCS(np.zeros(2), bounds=(-2, 1), budget=50, seed=0)
    with pytest.raises(ValueError, match="lower"):
        other.set_state(state)


def test_same_seed_same_run_and_generator_seed_is_accepted():
    a = minimize(_sphere, np.zeros(3), bounds=(-5, 5), budget=301, seed=3)
    b = minimize(_sphere, np.zeros(3), bounds=(-5, 5), budget=301, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a.x, b.x)
    assert a.trajectory == b.trajectory and a.evaluations == 301 and a.generations == 30


@pytest.mark.parametrize("fn,bounds,budget,factor", [
    (_sphere, 5.0, 2000, 0.5),
    (_rastrigin, 5.12, 10000, 0.85),
])
def test_ncs_beats_random_search_with_the_same_budget(fn, bounds, budget, factor):
    ncs_best, random_best = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        initial = rng.uniform(-bounds, bounds, (10, 10))
        ncs_best.append(minimize(fn, initial, bounds=(-bounds, bounds), budget=budget, seed=seed).fitness)
        random_best.append(min(fn(x) for x in rng.uniform(-bounds, bounds, (budget, 10))))
    assert np.median(ncs_best) < factor * np.median(random_best)
