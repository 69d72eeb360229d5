import type { Principal, Role } from './types.js';

/** One screen of the dashboard. `dispose` stops whatever it left running (an event stream, a timer). */
export interface View {
  element: HTMLElement;
  dispose?: () => void;
}

/** What every view gets: who is signed in, and a way to move to another screen. */
export interface AppContext {
  me: Principal;
  navigate(hash: string): void;
}

/** Who may use what. Only for showing and hiding: the API checks every call itself. */
export const CAN = {
  createStudies: (role: Role): boolean => role === 'researcher',
  /** Start is for the owner only; stop, pause and resume for the owner or an admin. */
  startStudy: (me: Principal, owner: string | null): boolean => me.role === 'researcher' && (owner === null || owner === me.name),
  steerStudy: (me: Principal, owner: string | null): boolean => me.role === 'admin' || (me.role === 'researcher' && (owner === null || owner === me.name)),
  /** Model artifacts leave the coordinator only to researchers; auditors never see a download. */
  downloadModels: (role: Role): boolean => role === 'researcher',
  audit: (role: Role): boolean => role === 'auditor' || role === 'admin',
};
