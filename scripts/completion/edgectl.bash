# bash completion for edgectl (installed by scripts/install as
# /usr/share/bash-completion/completions/edgectl).  Completes commands, actions and options,
# GPIO device ids (from `edgectl --json gpio list` while the daemon runs) and config keys.

# Every key of config/edged.toml (the example config); tests/service/test_service_completion.py
# checks this list against it.
_EDGECTL_CONFIG_KEYS="
live.model live.api_key_file live.base_url live.ca_file live.api_version
live.voice live.language live.system_instruction live.transcription live.connect_timeout_s
live.handle_max_age_s live.backoff_initial_s live.backoff_max_s live.stable_after_s live.auth_retry_s
live.compression_trigger_tokens live.compression_target_tokens live.ping_interval_s live.ping_timeout_s live.replay_buffer_s
live.thinking_level live.media_resolution live.google_search audio.capture_device audio.playback_device
audio.capture_rate audio.capture_channels audio.playback_rate audio.playback_channels audio.capture_buffer_ms
audio.jitter_ms audio.reopen_backoff_max_s audio.volume audio.volume_step audio.mixer
audio.mixer_device wake.engine wake.models wake.models_dir wake.threshold
wake.trigger_frames wake.refractory_s wake.suppress_while_playing wake.quiet_margin_db turn.vad turn.vad_aggressiveness
turn.detector turn.silence_ms turn.smart_silence_ms turn.smart_threshold turn.smart_reask_ms turn.smart_threads turn.preroll_ms
turn.max_utterance_s turn.no_speech_timeout_s turn.follow_up_s turn.reply_timeout_s state.dir
control.socket control.group control.admin_group control.max_request_bytes gpio.pin_factory
gpio.status_led gpio.camera_led gpio.talk_button gpio.mute_button camera.backend
camera.max_side camera.quality camera.watch_fps camera.watch_max_s cues.volume
cues.duck cues.wake.enabled cues.wake.file cues.listen_end.enabled cues.listen_end.file
cues.offline.enabled cues.offline.file cues.mute_on.enabled cues.mute_on.file cues.mute_off.enabled
cues.mute_off.file cues.ring.enabled cues.ring.file timers.max timers.ring_max_s
timers.missed_max_s mqtt.enabled mqtt.host mqtt.port mqtt.tls
mqtt.ca_file mqtt.cert_file mqtt.key_file mqtt.username mqtt.password_file
mqtt.client_id mqtt.device_id mqtt.discovery_prefix mqtt.base_topic mqtt.device_name
mqtt.share_transcripts mqtt.camera mqtt.keepalive_s mqtt.backoff_initial_s mqtt.backoff_max_s
log.level
"

_edgectl_gpio_ids() {
  # the ids are the top-level keys of `edgectl --json gpio list` (two-space indented JSON)
  edgectl "${_edgectl_global[@]}" --timeout 2 --json gpio list 2>/dev/null \
    | sed -n 's/^  "\([^"]*\)": {.*/\1/p'
}

_edgectl() {
  local cur prev word i
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  local globals="--socket --config --json --verbose --timeout --help"
  case "$prev" in
    --socket|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --timeout) COMPREPLY=(); return ;;
  esac
  # the words before the cursor, without global options (they may stand anywhere)
  local -a words=()
  _edgectl_global=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    case "$word" in
      --socket|--config|--timeout)
        _edgectl_global+=("$word" "${COMP_WORDS[i+1]}"); ((i++)) ;;
      --) words+=("$word") ;;
      -*) ;;
      *) words+=("$word") ;;
    esac
  done
  if [[ "$cur" == -* ]]; then
    local extra=""
    [[ "${words[0]} ${words[1]}" == "config validate" ]] && extra="--portable"
    [[ "${words[0]}" == doctor ]] && extra="--live"
    COMPREPLY=($(compgen -W "$globals $extra" -- "$cur"))
    return
  fi
  local cmd="${words[0]}" action="${words[1]}" n=${#words[@]}
  case "$n" in
    0) COMPREPLY=($(compgen -W "status config reload gpio volume timers wake say snapshot session mute events doctor" \
                     -- "$cur")); return ;;
  esac
  case "$cmd" in
    config)
      case "$n" in
        1) COMPREPLY=($(compgen -W "show get set validate" -- "$cur")) ;;
        2) case "$action" in
             get) COMPREPLY=($(compgen -W "$_EDGECTL_CONFIG_KEYS" -- "$cur")) ;;
             # keys that may never be set with edgectl (endpoint, secrets, paths, state, control, mqtt) are not offered
             set) COMPREPLY=($(compgen -W "$(printf '%s\n' $_EDGECTL_CONFIG_KEYS \
                    | grep -Ev '^(live\.(base_url|ca_file|api_key_file|api_version)|wake\.models_dir|cues\..*\.file|(state|control|mqtt)\..*)$')" \
                    -- "$cur")) ;;
             validate) COMPREPLY=($(compgen -f -- "$cur")) ;;
           esac ;;
      esac ;;
    gpio)
      case "$n" in
        1) COMPREPLY=($(compgen -W "list set" -- "$cur")) ;;
        2) [[ "$action" == set ]] && COMPREPLY=($(compgen -W "$(_edgectl_gpio_ids)" -- "$cur")) ;;
        3) [[ "$action" == set ]] && COMPREPLY=($(compgen -W "on off toggle" -- "$cur")) ;;
      esac ;;
    volume) [[ $n -eq 1 ]] && COMPREPLY=($(compgen -W "up down" -- "$cur")) ;;
    timers) [[ $n -eq 1 ]] && COMPREPLY=($(compgen -W "list cancel stop" -- "$cur")) ;;
    session) [[ $n -eq 1 ]] && COMPREPLY=($(compgen -W "reset" -- "$cur")) ;;
    mute) [[ $n -eq 1 ]] && COMPREPLY=($(compgen -W "on off" -- "$cur")) ;;
    snapshot) [[ $n -eq 1 ]] && COMPREPLY=($(compgen -f -X '!*.jpg' -- "$cur")) ;;
  esac
}

complete -F _edgectl edgectl
