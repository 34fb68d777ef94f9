"""Tests of the WeChat and KuaiRand loaders on small files in the exact upstream formats."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from stan_model.data.loaders import LoaderError, load_kuairand, load_wechat
from stan_model.data.raw_store import (
    events_partition,
    items_path,
    partition_days,
    read_events,
    read_manifest,
    users_path,
)
from stan_model.schema import EVENTS_SCHEMA, TaskSpec, read_table

UTC = dt.UTC


def columns(text: str) -> list[str]:
    return text.split(",")


# --------------------------------------------------------------------------------------------
# Upstream-format fixtures
# --------------------------------------------------------------------------------------------

WECHAT_ACTION_HEADER = columns(
    "userid,feedid,date_,device,read_comment,comment,like,play,stay,click_avatar,forward,"
    "follow,favorite"
)
WECHAT_ACTIONS = [  # day 1: users 8, 8, 20; day 2: users 8, 20, 33
    "8,71474,1,1,0,0,1,500,5366,0,0,0,0",
    "8,73916,1,1,0,0,0,0,1533,0,0,0,0",
    "20,71474,1,2,0,0,0,250,1302,0,1,0,0",
    "8,50282,2,2,1,0,0,9024,10550,1,0,0,1",
    "20,73916,2,2,0,1,0,0,0,0,0,0,0",
    "33,50282,2,1,0,0,0,12000,15000,0,0,1,0",
]
WECHAT_FEED_HEADER = columns(
    "feedid,authorid,videoplayseconds,description,ocr,asr,bgm_song_id,bgm_singer_id,"
    "manual_keyword_list,machine_keyword_list,manual_tag_list,machine_tag_list,"
    "description_char,ocr_char,asr_char"
)
WECHAT_FEEDS = [  # empty text fields, ;-lists, a feed nobody saw (99999)
    "71474,7,5,104741 122649 8109,,,,,15506;6213,15506;6213,81;8,81 0.9966;8 0.2093,26 27 28,,",
    "73916,1528,60,,139499 26653,9832,25252,12,,,194;267;159,194 0.98,,14 15,",
    "50282,2900,22,35753 3565 19839,,,,,,,,,11 12,,",
    "99999,3,11,,,,,,,,32,32 0.5,,,",
]

KUAI_LOG_HEADER = columns(
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
    "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
    "is_profile_enter,is_rand,tab"
)
KUAI_USER_HEADER = columns(
    "user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,"
    "follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,"
    "friend_user_num_range,register_days,register_days_range,"
    + ",".join(f"onehot_feat{i}" for i in range(18))
)


def epoch_ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=UTC).timestamp() * 1000)


T1 = epoch_ms(2022, 4, 8, 2, 0, 0)  # 10:00 Beijing, 2022-04-08
T2 = epoch_ms(2022, 4, 8, 2, 1, 30)
T3 = epoch_ms(2022, 4, 8, 23, 30, 0)  # already 2022-04-09 in Beijing
T4 = epoch_ms(2022, 4, 9, 1, 0, 0)
T5 = epoch_ms(2022, 4, 9, 3, 15, 0)

KUAI_LOG_1 = [  # deliberately not in time order
    f"1001,5,20220408,1001,{T2},1,0,0,0,0,0,1,13480,12000,0,0,0,0,1",
    f"1001,7,20220408,1000,{T1},0,0,0,0,0,0,0,2500,45400,0,0,0,0,1",
    f"1002,5,20220409,730,{T3},1,1,0,0,0,0,0,1200,12500,0,0,0,0,0",
]
KUAI_LOG_2 = [
    f"1002,9,20220409,900,{T4},1,0,1,1,1,0,1,60792,45000,1430,0,1,0,1",
    f"1004,7,20220409,1115,{T5},0,0,0,0,0,1,0,0,46000,0,0,0,0,2",
]
KUAI_USERS = [  # string categoricals, a quoted range with a comma, empty onehot fields
    '1001,high_active,0,0,0,5,"(0,10]",0,0,0,0,107,61-90,0,1,17,1,,,3,0,0,1,0,0,0,0,0,0,0,0',
    '1002,full_active,0,0,0,52,"(50,100]",3,"[1,10)",2,"[1,5)",731,730+,1,2,0,1,0,,,,,0,0,0,0,0,0,'
    "0,0,0",
    "1003,UNKNOWN,1,0,0,0,0,0,0,0,0,12,0-30,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0",
]
LOG_1 = "log_standard_4_08_to_4_08_pure.csv"
LOG_2 = "log_standard_4_09_to_4_09_pure.csv"
USERS = "user_features_pure.csv"


def write_csv(path: Path, header: list[str], rows: list[str]) -> Path:
    path.write_text(",".join(header) + "\n" + "".join(row + "\n" for row in rows))
    return path


def wechat_dir(root: Path) -> Path:
    src = root / "wechat"
    src.mkdir()
    write_csv(src / "user_action.csv", WECHAT_ACTION_HEADER, WECHAT_ACTIONS)
    write_csv(src / "feed_info.csv", WECHAT_FEED_HEADER, WECHAT_FEEDS)
    return src


def kuairand_dir(root: Path) -> Path:
    src = root / "kuairand"
    src.mkdir()
    write_csv(src / LOG_1, KUAI_LOG_HEADER, KUAI_LOG_1)
    write_csv(src / LOG_2, KUAI_LOG_HEADER, KUAI_LOG_2)
    write_csv(src / USERS, KUAI_USER_HEADER, KUAI_USERS)
    (src / "video_features_basic_pure.csv").write_text("video_id,author_id\n5,1\n")  # ignored
    return src


# --------------------------------------------------------------------------------------------
# WeChat
# --------------------------------------------------------------------------------------------


def test_wechat_load_writes_the_raw_world(tmp_path: Path) -> None:
    home = tmp_path / "home"
    manifest = load_wechat(wechat_dir(tmp_path), home)

    assert partition_days(home) == [dt.date(2021, 1, 1), dt.date(2021, 1, 2)]
    day1 = read_table(events_partition(home, dt.date(2021, 1, 1)), "events")
    day2 = read_table(events_partition(home, dt.date(2021, 1, 2)), "events")
    assert (day1.num_rows, day2.num_rows) == (3, 3)
    labels = ["read_comment", "comment", "like", "click_avatar", "forward", "follow", "favorite"]
    assert day1.column_names == EVENTS_SCHEMA.names + labels

    d1 = day1.to_pydict()
    assert d1["user_id"] == [8, 8, 20] and d1["item_id"] == [71474, 73916, 71474]
    assert d1["click"] == [1, 0, 1]  # play > 0
    assert d1["stay_seconds"] == pytest.approx([5.366, 1.533, 1.302])
    assert d1["order"] == [0, 0, 0]
    assert d1["like"] == [1, 0, 0] and d1["forward"] == [0, 0, 1]
    midnight = dt.datetime(2021, 1, 1, tzinfo=UTC)
    offsets = [0, 86399 // 3, 2 * 86399 // 3]  # spread over the day in file order
    assert d1["event_ts"] == [midnight + dt.timedelta(seconds=s) for s in offsets]
    assert d1["position"] == [0, 1, 0]
    assert d1["session_id"][0] == d1["session_id"][1] != d1["session_id"][2]

    d2 = day2.to_pydict()
    assert d2["favorite"] == [1, 0, 0] and d2["comment"] == [0, 1, 0]
    assert d2["click_avatar"] == [1, 0, 0] and d2["follow"] == [0, 0, 1]
    assert d2["event_ts"][0] == midnight + dt.timedelta(days=1)
    every = read_events(home)
    assert sorted(every.column("event_id").to_pylist()) == list(range(6))
    assert len(set(every.column("session_id").to_pylist())) == 5  # (user, day) pairs

    assert manifest == read_manifest(home)
    assert manifest.source == "wechat"
    assert (manifest.start_date, manifest.end_date) == ("2021-01-01", "2021-01-02")
    assert (manifest.n_events, manifest.n_users, manifest.n_items) == (6, 3, 4)
    assert manifest.tasks == [TaskSpec(n, n) for n in ("like", "click_avatar", "forward")]
    assert manifest.extra_label_columns == labels
    assert manifest.details["files"] == ["user_action.csv", "feed_info.csv"]


def test_wechat_users_and_items(tmp_path: Path) -> None:
    home = tmp_path / "home"
    load_wechat(wechat_dir(tmp_path), home, start_date=dt.date(2021, 6, 1))

    users = read_table(users_path(home), "users").to_pydict()
    assert users["user_id"] == [8, 20, 33]
    june1 = dt.datetime(2021, 6, 1, tzinfo=UTC)
    assert users["signup_ts"][0] == june1  # first event of user 8
    assert users["signup_ts"][2] > june1 + dt.timedelta(days=1)  # user 33 starts on day 2
    assert users["device_os"] == [1, 2, 1]  # device of each user's first event
    assert users["age_bucket"] == [-1, -1, -1]

    items = read_table(items_path(home), "items").to_pydict()
    assert items["item_id"] == [71474, 73916, 50282, 99999]
    assert items["category_id"] == [81, 194, -1, 32]  # first manual tag; -1 when empty
    assert items["author_id"] == [7, 1528, 2900, 3]
    assert items["duration_s"] == [5.0, 60.0, 22.0, 11.0]
    assert items["price"] == [0.0] * 4
    assert set(items["created_ts"]) == {june1}


def test_wechat_task_selection(tmp_path: Path) -> None:
    manifest = load_wechat(wechat_dir(tmp_path), tmp_path / "home", tasks=["ctr", "favorite"])
    assert manifest.tasks == [TaskSpec("ctr", "click"), TaskSpec("favorite", "favorite")]


@pytest.mark.parametrize(
    ("loader", "tasks", "expected"),
    [
        ("wechat", ["like", "stay"], ["'stay'", "click_avatar", "read_comment", "ctr"]),
        ("kuairand", ["ctr", "share"], ["'share'", "long_view", "hate"]),
        ("wechat", [], ["choose one or more"]),
    ],
)
def test_unknown_task_lists_the_choices(
    tmp_path: Path, loader: str, tasks: list[str], expected: list[str]
) -> None:
    load = load_wechat if loader == "wechat" else load_kuairand
    with pytest.raises(LoaderError) as err:
        load(tmp_path, tmp_path / "home", tasks=tasks)
    for text in expected:
        assert text in str(err.value)


def test_wechat_position_is_capped_at_int16(tmp_path: Path) -> None:
    src = wechat_dir(tmp_path)
    rows = ["8,71474,1,1,0,0,0,0,0,0,0,0,0"] * 32_770  # one (user, day) session
    write_csv(src / "user_action.csv", WECHAT_ACTION_HEADER, rows)
    load_wechat(src, tmp_path / "home")
    day = read_table(events_partition(tmp_path / "home", dt.date(2021, 1, 1)), "events")
    assert day.column("position").to_pylist()[-4:] == [32766, 32767, 32767, 32767]


def test_reloading_replaces_and_foreign_partitions_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = wechat_dir(tmp_path)
    load_wechat(src, home)
    load_wechat(src, home)  # same days: overwritten in place
    assert read_events(home).num_rows == 6
    with pytest.raises(LoaderError, match=r"raw/events.*outside this dataset's days"):
        load_kuairand(kuairand_dir(tmp_path), home)


def test_a_loaded_dataset_drops_a_previous_worlds_truth(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stale = home / "truth" / "user_stage" / "dt=2021-01-01" / "part-0.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"latent stages of some simulated world")
    load_wechat(wechat_dir(tmp_path), home)
    assert not (home / "truth").exists()


# --------------------------------------------------------------------------------------------
# KuaiRand
# --------------------------------------------------------------------------------------------


def test_kuairand_load_writes_the_raw_world(tmp_path: Path) -> None:
    home = tmp_path / "home"
    manifest = load_kuairand(kuairand_dir(tmp_path), home)

    # Partitions follow the UTC day of time_ms, not the Beijing `date` column.
    assert partition_days(home) == [dt.date(2022, 4, 8), dt.date(2022, 4, 9)]
    day1 = read_table(events_partition(home, dt.date(2022, 4, 8)), "events").to_pydict()
    day2 = read_table(events_partition(home, dt.date(2022, 4, 9)), "events").to_pydict()
    ms = dt.timedelta(milliseconds=1)
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert day1["event_ts"] == [epoch + t * ms for t in (T1, T2, T3)]  # sorted by time
    assert day1["item_id"] == [7, 5, 5]
    assert day1["event_id"] == [1, 0, 2]  # row order over the concatenated files
    assert day1["click"] == [0, 1, 1]
    assert day1["stay_seconds"] == pytest.approx([2.5, 13.48, 1.2])
    assert day1["long_view"] == [0, 1, 0] and day1["like"] == [0, 0, 1]
    assert day1["position"] == [0, 1, 0]  # rank by time within (user, date)
    assert day2["event_ts"] == [epoch + t * ms for t in (T4, T5)]
    assert day2["follow"] == [1, 0] and day2["hate"] == [0, 1] and day2["forward"] == [1, 0]
    # User 1002's T3 and T4 rows share the Beijing date 20220409: one session over two partitions
    assert day1["session_id"][2] == day2["session_id"][0]
    assert day2["position"] == [1, 0]

    assert manifest.source == "kuairand"
    assert manifest.tasks == [
        TaskSpec("ctr", "click"),
        TaskSpec("like", "like"),
        TaskSpec("long_view", "long_view"),
    ]
    assert manifest.extra_label_columns == [
        "like",
        "follow",
        "comment",
        "forward",
        "hate",
        "long_view",
    ]
    assert (manifest.n_events, manifest.n_users, manifest.n_items) == (5, 4, 3)
    assert manifest.details["files"] == [LOG_1, LOG_2, USERS]
    assert manifest.details["rows"] == {LOG_1: 3, LOG_2: 2, USERS: 3}


def test_kuairand_users_and_items(tmp_path: Path) -> None:
    home = tmp_path / "home"
    load_kuairand(kuairand_dir(tmp_path), home, tasks=["hate"])

    users = read_table(users_path(home), "users").to_pydict()
    assert users["user_id"] == [1001, 1002, 1003, 1004]  # 1003: features only; 1004: log only
    first_day = dt.datetime(2022, 4, 8, tzinfo=UTC)
    assert users["signup_ts"][:3] == [first_day - dt.timedelta(days=d) for d in (107, 731, 12)]
    assert users["signup_ts"][3] == dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(
        milliseconds=T5
    )
    assert users["device_os"] == [-1] * 4

    items = read_table(items_path(home), "items").to_pydict()
    assert items["item_id"] == [5, 7, 9]
    # duration of each video's earliest event (video 7: T1)
    assert items["duration_s"] == pytest.approx([12.0, 45.4, 45.0])
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert items["created_ts"] == [epoch + dt.timedelta(milliseconds=t) for t in (T2, T1, T4)]
    assert items["category_id"] == [-1] * 3 and items["author_id"] == [-1] * 3


# --------------------------------------------------------------------------------------------
# Malformed inputs
# --------------------------------------------------------------------------------------------


def edit_cell(path: Path, row: int, column: str, value: str) -> None:
    """Set ``column`` of data row ``row`` (1-based) to ``value``."""
    with path.open(newline="") as fh:
        lines = list(csv.reader(fh))
    lines[row][lines[0].index(column)] = value
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(lines)


def drop_column(path: Path, column: str) -> None:
    with path.open(newline="") as fh:
        lines = list(csv.reader(fh))
    at = lines[0].index(column)
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([r[:at] + r[at + 1 :] for r in lines])


def delete_row(path: Path, row: int) -> None:
    lines = path.read_text().split("\n")
    path.write_text("\n".join(lines[:row] + lines[row + 1 :]))


def edit_line(path: Path, row: int, change: Callable[[str], str]) -> None:
    lines = path.read_text().split("\n")
    lines[row] = change(lines[row])
    path.write_text("\n".join(lines))


# fmt: off  (one case per entry reads better as a table)
BAD_INPUTS = {
    # id: (dataset, file, damage, substrings the message must contain)
    "wechat-missing-file": (
        "wechat",
        "feed_info.csv",
        lambda p: p.unlink(),
        ["feed_info.csv", "not found"],
    ),
    "wechat-missing-column": (
        "wechat",
        "user_action.csv",
        lambda p: drop_column(p, "stay"),
        ["user_action.csv", "'stay'", "found ['userid'"],
    ),
    "wechat-short-row": (
        "wechat",
        "user_action.csv",
        lambda p: edit_line(p, 3, lambda s: s.rsplit(",", 1)[0]),
        ["user_action.csv", "row 3", "12 field(s)", "13"],
    ),
    "wechat-non-numeric": (
        "wechat",
        "user_action.csv",
        lambda p: edit_cell(p, 2, "feedid", "7x3916"),
        ["user_action.csv", "row 2", "'feedid'", "'7x3916'"],
    ),
    "wechat-negative-stay": (
        "wechat",
        "user_action.csv",
        lambda p: edit_cell(p, 4, "stay", "-5"),
        ["user_action.csv", "row 4", "'stay'", ">= 0"],
    ),
    "wechat-negative-play": (
        "wechat",
        "user_action.csv",
        lambda p: edit_cell(p, 6, "play", "-1"),
        ["user_action.csv", "row 6", "'play'"],
    ),
    "wechat-label-2": (
        "wechat",
        "user_action.csv",
        lambda p: edit_cell(p, 5, "like", "2"),
        ["user_action.csv", "row 5", "'like'", "0/1"],
    ),
    "wechat-empty-value": (
        "wechat",
        "user_action.csv",
        lambda p: edit_cell(p, 6, "date_", ""),
        ["user_action.csv", "row 6", "'date_'", "empty"],
    ),
    "wechat-blank-line": (
        "wechat",
        "user_action.csv",
        lambda p: edit_line(p, 2, lambda s: "\n" + s),
        ["user_action.csv", "row 2", "empty"],
    ),
    "wechat-day-zero": (
        "wechat",
        "user_action.csv",
        lambda p: edit_cell(p, 1, "date_", "0"),
        ["user_action.csv", "row 1", "'date_'"],
    ),
    "wechat-missing-feed": (
        "wechat",
        "feed_info.csv",
        lambda p: delete_row(p, 2),
        ["user_action.csv", "feed_info.csv", "'feedid'", "1 feedid", "73916", "row 2"],
    ),
    "wechat-duplicate-feed": (
        "wechat",
        "feed_info.csv",
        lambda p: edit_cell(p, 4, "feedid", "71474"),
        ["feed_info.csv", "row 4", "'feedid'"],
    ),
    "wechat-bad-tag-list": (
        "wechat",
        "feed_info.csv",
        lambda p: edit_cell(p, 2, "manual_tag_list", "194,267"),
        ["feed_info.csv", "row 2", "'manual_tag_list'"],
    ),
    "kuairand-no-logs": (
        "kuairand",
        LOG_1,
        lambda p: [q.unlink() for q in p.parent.glob("log_*")],
        ["log_standard_*.csv", "not found"],
    ),
    "kuairand-missing-users": (
        "kuairand",
        USERS,
        lambda p: p.unlink(),
        ["user_features*.csv", "not found"],
    ),
    "kuairand-missing-column": (
        "kuairand",
        LOG_2,
        lambda p: drop_column(p, "time_ms"),
        [LOG_2, "'time_ms'", "found"],
    ),
    "kuairand-short-row": (
        "kuairand",
        USERS,
        lambda p: edit_line(p, 2, lambda s: s.split(",731,")[0]),
        [USERS, "row 2", "field(s)"],
    ),
    "kuairand-non-numeric": (
        "kuairand",
        LOG_2,
        lambda p: edit_cell(p, 2, "play_time_ms", "1.2.3"),
        [LOG_2, "row 2", "'play_time_ms'", "'1.2.3'"],
    ),
    "kuairand-negative-play": (
        "kuairand",
        LOG_1,
        lambda p: edit_cell(p, 3, "play_time_ms", "-1200"),
        [LOG_1, "row 3", "'play_time_ms'"],
    ),
    "kuairand-label-2": (
        "kuairand",
        LOG_2,
        lambda p: edit_cell(p, 1, "long_view", "2"),
        [LOG_2, "row 1", "'long_view'", "0/1"],
    ),
    "kuairand-register-days-text": (
        "kuairand",
        USERS,
        lambda p: edit_cell(p, 3, "register_days", "UNKNOWN"),
        [USERS, "row 3", "'register_days'", "'UNKNOWN'"],
    ),
    "kuairand-nan-duration": (
        "kuairand",
        LOG_1,
        lambda p: edit_cell(p, 1, "duration_ms", "nan"),
        [LOG_1, "row 1", "'duration_ms'", "finite"],
    ),
}
# fmt: on


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_malformed_input_names_file_and_place(tmp_path: Path, case: str) -> None:
    dataset, file_name, damage, expected = BAD_INPUTS[case]
    src = wechat_dir(tmp_path) if dataset == "wechat" else kuairand_dir(tmp_path)
    damage(src / file_name)
    load = load_wechat if dataset == "wechat" else load_kuairand
    with pytest.raises(LoaderError) as err:
        load(src, tmp_path / "home")
    message = str(err.value)
    for text in expected:
        if text.startswith("row "):
            assert re.search(rf"\b{text}\b", message), f"{text!r} not in {message!r}"
        else:
            assert text in message, f"{text!r} not in {message!r}"
    assert not (tmp_path / "home" / "raw").exists()  # nothing half-written


def test_errors_are_located_in_a_large_file(tmp_path: Path) -> None:
    """Threaded parsing of a multi-block file still reports exact rows (the error paths)."""
    src = wechat_dir(tmp_path)
    n = 150_000
    body = "".join(f"{u % 97},71474,{1 + u % 14},1,0,0,0,0,0,0,0,0,0\n" for u in range(n))
    action = src / "user_action.csv"

    lines = body.split("\n")  # lines[i] is data row i + 1
    lines[n - 12] = lines[n - 12].replace(",71474,", ",abc,")  # data row n - 11
    action.write_text(",".join(WECHAT_ACTION_HEADER) + "\n" + "\n".join(lines))
    with pytest.raises(LoaderError, match=rf"row {n - 11}, column 'feedid': value 'abc'"):
        load_wechat(src, tmp_path / "home")

    lines[n - 1000] = "1,2,3"  # a short row before the bad value wins: data row n - 999
    action.write_text(",".join(WECHAT_ACTION_HEADER) + "\n" + "\n".join(lines))
    with pytest.raises(LoaderError, match=rf"user_action.csv: row {n - 999} has 3 field"):
        load_wechat(src, tmp_path / "home")


def test_loader_error_is_a_value_error() -> None:
    assert issubclass(LoaderError, ValueError)
