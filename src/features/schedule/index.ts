/*
 * The schedule feature's public surface: the periodic work (expire unpaid
 * orders, hand QStash what it never got, purge old records), run once per
 * slot whoever ticks: Workers cron triggers, the in-process scheduler of Bun
 * and Node (src/runtime/scheduler.ts), or a QStash schedule (jobs routes).
 */
export { DAILY, MINUTELY, runSchedule, SCHEDULES, type ScheduleEnv, type ScheduleReport } from './schedule.ts'
